package engine

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/pgcloudbackup/pgcloudbackup/internal/failure"
)

// postmasterIdentity is what the server says about its postmaster: the
// port it listens on and when it started; and where we reached it.
type postmasterIdentity struct {
	Port      int
	StartTime time.Time // pg_postmaster_start_time()
	// Remote is the server's address as this client connected to it, nil
	// over a Unix socket.
	Remote net.Addr
}

// postmaster asks the server for its port and start time.
func (s *session) postmaster(ctx context.Context) (postmasterIdentity, error) {
	var id postmasterIdentity
	var port string
	err := s.conn.QueryRow(ctx, "SELECT current_setting('port'), pg_postmaster_start_time()").Scan(&port, &id.StartTime)
	if err != nil {
		return id, permissionOr(err, "read the server's port and start time")
	}
	if id.Port, err = strconv.Atoi(port); err != nil {
		return id, fmt.Errorf("parse port setting %q: %w", port, err)
	}
	if c := s.conn.PgConn().Conn(); c != nil {
		if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
			id.Remote = a
		}
	}
	return id, nil
}

// isLocalAddr reports whether a is an address of this host (loopback or
// one of its interfaces'): a server reached elsewhere cannot be the one
// whose data directory we read.
func isLocalAddr(a net.Addr) bool {
	tcp, ok := a.(*net.TCPAddr)
	if !ok {
		return true // a Unix socket
	}
	if tcp.IP.IsLoopback() {
		return true
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return true // cannot tell: let the other checks decide
	}
	for _, ia := range addrs {
		if n, ok := ia.(*net.IPNet); ok && n.IP.Equal(tcp.IP) {
			return true
		}
	}
	return false
}

// pidFile is what postmaster.pid says (its first lines, as
// miscadmin.h's LOCK_FILE_LINE_* numbers them).
type pidFile struct {
	PID       int
	DataDir   string
	StartTime int64 // seconds since the epoch
	Port      int
}

func parsePidFile(b []byte) (pidFile, error) {
	lines := strings.Split(string(b), "\n")
	if len(lines) < 4 {
		return pidFile{}, errors.New("fewer than 4 lines")
	}
	var p pidFile
	var err error
	// The PID is negative for a single-user backend.
	if p.PID, err = strconv.Atoi(strings.TrimSpace(lines[0])); err != nil || p.PID == 0 {
		return pidFile{}, fmt.Errorf("line 1 %q is not a process ID", lines[0])
	}
	p.DataDir = strings.TrimRight(lines[1], "\r")
	if p.StartTime, err = strconv.ParseInt(strings.TrimSpace(lines[2]), 10, 64); err != nil {
		return pidFile{}, fmt.Errorf("line 3 %q is not a start time", lines[2])
	}
	if p.Port, err = strconv.Atoi(strings.TrimSpace(lines[3])); err != nil {
		return pidFile{}, fmt.Errorf("line 4 %q is not a port", lines[3])
	}
	return p, nil
}

// startSlack bounds how long after writing postmaster.pid (its start time,
// taken first) the postmaster sets pg_postmaster_start_time (after shared
// memory is set up, which takes a while with a large shared_buffers).
const startSlack = 10 * time.Minute

// checkPostmaster proves that dir is the data directory of the server the
// session is connected to, beyond the system identifier (which a restored
// copy or a standby shares): its postmaster.pid must name a live
// postmaster, this directory, and the server's port and start time.
func checkPostmaster(dir string, srv postmasterIdentity, addr string) error {
	notOurs := func(why string) error {
		return failure.Wrap(failure.Precondition,
			fmt.Errorf("data directory %s is not the one the server at %s runs on: %s", dir, addr, why),
			"a restored copy or a standby of the same cluster shares its system identifier; give the --pgdata of the server you connect to (or connect to the server of that directory)")
	}
	path := filepath.Join(dir, "postmaster.pid")
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return notOurs("it has no postmaster.pid, so no server runs on it")
	case errors.Is(err, fs.ErrPermission):
		return failure.Wrap(failure.Precondition,
			fmt.Errorf("cannot read %s: permission denied", path),
			"run as the OS user that owns the cluster (usually postgres)")
	case err != nil:
		return fmt.Errorf("read %s: %w", path, err)
	}
	pf, err := parsePidFile(b)
	if err != nil {
		return notOurs(fmt.Sprintf("its postmaster.pid is unreadable (%v)", err))
	}
	if pf.Port != srv.Port {
		return notOurs(fmt.Sprintf("its postmaster.pid names port %d, the server listens on port %d", pf.Port, srv.Port))
	}
	started := srv.StartTime.Unix()
	if pf.StartTime > started || started-pf.StartTime > int64(startSlack/time.Second) {
		return notOurs(fmt.Sprintf("its postmaster started at %s, the server at %s",
			time.Unix(pf.StartTime, 0).UTC().Format(time.RFC3339), srv.StartTime.UTC().Format(time.RFC3339)))
	}
	// A copy of a running data directory (cp -a, rsync) carries the
	// original's postmaster.pid: it names the original's directory.
	named, err := os.Stat(pf.DataDir)
	if err != nil {
		// The server sees its directory under another path (it runs in
		// a container with the directory mounted elsewhere): neither the
		// path nor the PID (another PID namespace) can be checked from
		// here; port and start time have matched.
		return nil
	}
	if here, err := os.Stat(dir); err == nil && !os.SameFile(named, here) {
		return notOurs(fmt.Sprintf("its postmaster.pid belongs to the server of %s", pf.DataDir))
	}
	// The postmaster of this directory runs on this host: the server we
	// reached must be here too (a standby host with the same layout, its
	// server started about when the primary was, would pass the rest).
	if srv.Remote != nil && !isLocalAddr(srv.Remote) {
		return notOurs(fmt.Sprintf("the server is reached at %s, not an address of this host", srv.Remote))
	}
	if pf.PID > 0 && !processExists(pf.PID) {
		return notOurs(fmt.Sprintf("its postmaster.pid names process %d, which is not running (a stale file)", pf.PID))
	}
	return nil
}

// processExists reports whether a process with this PID exists (EPERM: it
// does, under another user).
func processExists(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// maxLabelBytes is PostgreSQL's limit on a backup label (MAXPGPATH).
const maxLabelBytes = 1024

// CheckLabel refuses, before connecting, a label the server would refuse
// after its checkpoint (too long) or one that would add lines to
// backup_label (a line break before "START TIMELINE:").
func CheckLabel(label string) error {
	if len(label) > maxLabelBytes {
		return failure.New(failure.Usage, "backup label is %d bytes long: PostgreSQL takes at most %d", len(label), maxLabelBytes)
	}
	if strings.ContainsAny(label, "\n\r") {
		return failure.New(failure.Usage, "backup label must be one line")
	}
	return nil
}
