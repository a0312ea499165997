package deploy

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// The Kubernetes manifests are validated in a module of their own
// (deploy/k8s/validate: strict decoding into k8s.io/api types and the
// cross-references), so the API types stay out of the main go.mod. This
// runs its tests from the main module's `go test ./...`.
func TestKubernetesManifests(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the Kubernetes API types (about a minute the first time)")
	}
	gobin := filepath.Join(os.Getenv("GOROOT"), "bin", "go")
	if _, err := os.Stat(gobin); err != nil {
		if gobin, err = exec.LookPath("go"); err != nil {
			t.Fatalf("no go command to run the validator: %v", err)
		}
	}
	cmd := exec.Command(gobin, "test", "-count=1", "-mod=readonly", ".")
	cmd.Dir = filepath.Join("k8s", "validate")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("deploy/k8s/validate: %v\n%s", err, out)
	}
	t.Logf("%s", out)
}
