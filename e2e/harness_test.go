// Package e2e runs the pgcloudbackup binary the way users do: built from
// source, against real PostgreSQL clusters and real storage servers, with
// archives checked by ordinary tools (tar, zstd) and by PostgreSQL itself.
package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pgcloudbackup/pgcloudbackup/internal/pgtest"
)

// binary is the pgcloudbackup executable built for this test run.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "pgcloudbackup-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	// World-readable so restores can run as the postgres user.
	_ = os.Chmod(dir, 0o755)
	binary = filepath.Join(dir, "pgcloudbackup")
	build := exec.Command("go", "build", "-o", binary, "../cmd/pgcloudbackup")
	build.Stdout, build.Stderr = os.Stdout, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build pgcloudbackup:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// result is what one run of the binary did.
type result struct {
	code   int
	stdout string
	stderr string
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\n--- stdout ---\n%s\n--- stderr ---\n%s", r.code, r.stdout, r.stderr)
}

// cli runs the binary with extra environment and arguments.
func cli(t *testing.T, env []string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, args...)
	cmd.Env = append(cleanEnv(), env...)
	return runCmd(t, cmd)
}

// runCmd runs a prepared command of the binary and returns what it did.
func runCmd(t *testing.T, cmd *exec.Cmd) result {
	t.Helper()
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errb.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run %s: %v", cmd.Path, err)
	}
	return r
}

// cleanEnv is the test process environment minus anything that would
// point the binary somewhere else (libpq, AWS, our own variables).
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "PG") || strings.HasPrefix(k, "AWS_") || strings.HasPrefix(k, "AZURE_") ||
			k == "STORAGE_EMULATOR_HOST" || k == "GOOGLE_APPLICATION_CREDENTIALS" {
			continue
		}
		env = append(env, kv)
	}
	return env
}

// started is a binary running in the background.
type started struct {
	cmd    *exec.Cmd
	stdout bytes.Buffer
	stderr syncBuffer
}

func startCLI(t *testing.T, env []string, args ...string) *started {
	t.Helper()
	s := &started{cmd: exec.Command(binary, args...)}
	s.cmd.Env = append(cleanEnv(), env...)
	s.cmd.Stdout, s.cmd.Stderr = &s.stdout, &s.stderr
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", binary, err)
	}
	t.Cleanup(func() { _ = s.cmd.Process.Kill() })
	return s
}

// waitFor waits until stderr contains text.
func (s *started) waitFor(t *testing.T, text string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !strings.Contains(s.stderr.String(), text) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %q in stderr:\n%s", text, s.stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (s *started) signal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	if err := s.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("signal: %v", err)
	}
}

func (s *started) wait(t *testing.T) result {
	t.Helper()
	err := s.cmd.Wait()
	r := result{stdout: s.stdout.String(), stderr: s.stderr.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("wait: %v", err)
	}
	return r
}

// assertOneLineError checks the user-facing error rule: exactly one error
// line, the expected exit code, no stack trace.
func assertOneLineError(t *testing.T, r result, code int, contains string) {
	t.Helper()
	if r.code != code {
		t.Fatalf("exit code %d, want %d\n%s", r.code, code, r)
	}
	var errLines []string
	for _, l := range strings.Split(strings.TrimSpace(r.stderr), "\n") {
		if strings.HasPrefix(l, "pgcloudbackup: error:") {
			errLines = append(errLines, l)
		}
	}
	if len(errLines) != 1 {
		t.Fatalf("want exactly one error line, got %d\n%s", len(errLines), r)
	}
	if !strings.Contains(errLines[0], contains) {
		t.Errorf("error line %q does not mention %q", errLines[0], contains)
	}
	if strings.Contains(r.stderr, "goroutine ") || strings.Contains(r.stderr, "panic:") {
		t.Errorf("stack trace in output:\n%s", r.stderr)
	}
}

// sh runs a shell pipeline (ordinary tools: tar, zstd, ...).
func sh(t *testing.T, script string) string {
	t.Helper()
	out, err := exec.Command("bash", "-o", "pipefail", "-c", script).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", script, err, out)
	}
	return string(out)
}

// listFiles returns the files below dir, relative, slash-separated.
func listFiles(t *testing.T, dir string) []string {
	t.Helper()
	var files []string
	err := filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if info.Mode().IsRegular() {
			rel, _ := filepath.Rel(dir, p)
			files = append(files, filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// syncBuffer is a bytes.Buffer safe for a writer goroutine and a reader.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// startRestored starts the cluster restored at target (root: the tree
// holding it and its tablespaces, handed to the server's user when the
// tests run as root) and fails the test unless its data equals c's.
func startRestored(t *testing.T, c *pgtest.Cluster, sample *pgtest.Sample, root, target string) *pgtest.Cluster {
	t.Helper()
	if pgtest.RunningAsRoot() {
		pgtest.ChownToServerUser(t, root)
	}
	restored := pgtest.Adopt(t, target)
	if diff := pgtest.Compare(c, restored, sample.CompareQueries); diff != "" {
		t.Fatalf("restored data differs: %s", diff)
	}
	return restored
}
