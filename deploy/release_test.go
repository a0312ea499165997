package deploy

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The release configuration builds stripped, version-stamped, static
// binaries and ships the deploy examples; with the pinned goreleaser
// installed (make release-check), goreleaser itself checks the file.
func TestReleaseConfig(t *testing.T) {
	cfg, err := os.ReadFile(filepath.Join("..", ".goreleaser.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"-s -w -X main.version=v{{ .Version }}", "CGO_ENABLED=0", "-trimpath", "deploy/systemd/*", "main: ./cmd/pgcloudbackup"} {
		if !strings.Contains(string(cfg), want) {
			t.Errorf(".goreleaser.yaml lacks %q", want)
		}
	}
	tools := os.Getenv("PGCLOUDBACKUP_TOOLS")
	if tools == "" {
		tools = filepath.Join("..", ".tools")
	}
	bin := filepath.Join(tools, "bin", "goreleaser")
	if _, err := os.Stat(bin); err != nil {
		t.Skipf("goreleaser not installed (scripts/install-release-tools.sh): %v", err)
	}
	cmd := exec.Command(bin, "check")
	cmd.Dir = ".."
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("goreleaser check: %v\n%s", err, out)
	}
}
