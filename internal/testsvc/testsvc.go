// Package testsvc starts real storage servers for tests: MinIO (S3, plain or
// TLS), Azurite (Azure Blob) and fake-gcs-server (GCS). Each runs as a child
// process on a free loopback port with its data in the test's temporary
// directory, and is stopped when the test ends. Its log is copied into the
// test log when the test fails. A missing server binary calls
// testenv.Unavailable: a skip on a laptop, a failure in CI.
//
// scripts/install-test-services.sh installs the pinned versions into
// <repo>/.tools.
package testsvc

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pgcloudbackup/pgcloudbackup/internal/testenv"
)

// ToolsEnv names the variable that points at a tools directory (with a bin/
// inside) to search before <repo>/.tools.
const ToolsEnv = "PGCLOUDBACKUP_TOOLS"

// BinPath finds a server binary: $PGCLOUDBACKUP_TOOLS/bin, then
// <repo>/.tools/bin (the repository is found by walking up from the working
// directory to go.mod), then <repo>/.tools/npm/node_modules/.bin (where npm
// puts Azurite), then PATH.
func BinPath(name string) (string, error) {
	var tried []string
	try := func(p string) bool {
		tried = append(tried, p)
		st, err := os.Stat(p)
		return err == nil && !st.IsDir() && st.Mode()&0o111 != 0
	}
	if d := os.Getenv(ToolsEnv); d != "" {
		if p := filepath.Join(d, "bin", name); try(p) {
			return p, nil
		}
	}
	if root, err := testenv.RepoRoot(); err == nil {
		for _, p := range []string{
			filepath.Join(root, ".tools", "bin", name),
			filepath.Join(root, ".tools", "npm", "node_modules", ".bin", name),
		} {
			if try(p) {
				return p, nil
			}
		}
	}
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	tried = append(tried, "$PATH")
	return "", fmt.Errorf("%s not found (looked in %s); run scripts/install-test-services.sh",
		name, strings.Join(tried, ", "))
}

// needBin returns the path of a binary or stops the test as unavailable.
// Under -short (make test-unit: no servers) the test is skipped.
func needBin(t testing.TB, name string) string {
	t.Helper()
	if testing.Short() {
		t.Skipf("skipping: starts %s (-short)", name)
	}
	p, err := BinPath(name)
	if err != nil {
		testenv.Unavailable(t, "%v", err)
	}
	return p
}

// freePort returns a loopback TCP port that was free a moment ago. Another
// process may take it before the server binds it; start retries with a new
// port when the server exits at once.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// proc is one server process that can be stopped and started again with the
// same command line (same port, same data directory).
type proc struct {
	name    string
	bin     string
	args    func() []string // built at each start: they hold the port
	env     []string
	dir     string
	logPath string
	ready   func(ctx context.Context) error

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
	err  error         // cmd.Wait's result, valid after done
}

const readyTimeout = 60 * time.Second

// start runs the server and waits until ready succeeds. It returns an error
// (with the reason) instead of failing so the caller can retry on a new port.
func (p *proc) start() error {
	logf, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	args := p.args()
	fmt.Fprintf(logf, "=== %s: %s %s\n", time.Now().Format(time.RFC3339Nano), p.bin, strings.Join(args, " "))
	cmd := exec.Command(p.bin, args...)
	cmd.Dir = p.dir
	cmd.Env = p.env
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start %s: %w", p.name, err)
	}
	done := make(chan struct{})
	p.mu.Lock()
	p.cmd, p.done = cmd, done
	p.mu.Unlock()
	go func() {
		err := cmd.Wait()
		logf.Close()
		p.mu.Lock()
		p.err = err
		p.mu.Unlock()
		close(done)
	}()

	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	var last error
	for {
		rctx, rcancel := context.WithTimeout(ctx, 2*time.Second)
		last = p.ready(rctx)
		rcancel()
		if last == nil {
			return nil
		}
		select {
		case <-done:
			p.mu.Lock()
			err := p.err
			p.mu.Unlock()
			return fmt.Errorf("%s exited before it was ready (%v)", p.name, err)
		case <-ctx.Done():
			p.stop()
			return fmt.Errorf("%s not ready after %s: %v", p.name, readyTimeout, last)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// stop ends the server (SIGTERM to its process group, SIGKILL after 10 s)
// and waits for it. Stopping a stopped server does nothing.
func (p *proc) stop() {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.cmd = nil
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	select {
	case <-done:
		return
	default:
	}
	// The server leads its own process group (Setpgid): signal the group
	// so helper children (node's workers, if any) go too.
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
	}
}

func (p *proc) running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return false
	}
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// logTail returns the last max bytes of the server log.
func (p *proc) logTail(max int64) string {
	f, err := os.Open(p.logPath)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	off := int64(0)
	if st.Size() > max {
		off = st.Size() - max
	}
	buf := make([]byte, st.Size()-off)
	n, _ := f.ReadAt(buf, off)
	return string(buf[:n])
}

// launch starts p (retrying on a fresh port up to three times when the
// server exits at once, most likely because another process took the port),
// registers its cleanup and fails the test when it cannot start.
func launch(t testing.TB, p *proc, newPort func() error) {
	t.Helper()
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		if attempt > 0 {
			if perr := newPort(); perr != nil {
				t.Fatalf("testsvc: %v", perr)
			}
		}
		if err = p.start(); err == nil {
			break
		}
		if !strings.Contains(err.Error(), "exited before it was ready") {
			break
		}
	}
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			t.Logf("testsvc: %s log (%s), last part:\n%s", p.name, p.logPath, p.logTail(16<<10))
		}
	})
	if err != nil {
		t.Fatalf("testsvc: %v\n%s log:\n%s", err, p.name, p.logTail(16<<10))
	}
}

// restart starts a stopped server again with the same command line.
func restart(t testing.TB, p *proc) {
	t.Helper()
	if p.running() {
		return
	}
	if err := p.start(); err != nil {
		t.Fatalf("testsvc: restart: %v\n%s log:\n%s", err, p.name, p.logTail(16<<10))
	}
}

// baseEnv is the test process's environment without the variables that
// would change how a server behaves.
func baseEnv(drop ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		keep := true
		for _, d := range drop {
			if strings.HasPrefix(kv, d) {
				keep = false
				break
			}
		}
		if keep {
			env = append(env, kv)
		}
	}
	return env
}

// setEnv applies KEY=VALUE pairs with t.Setenv (so the test cannot be
// parallel).
func setEnv(t testing.TB, kvs []string) {
	t.Helper()
	for _, kv := range kvs {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
}
