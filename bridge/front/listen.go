package front

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/user"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// defaultIdleTimeout is how long an idle keep-alive HTTP connection is
// kept: longer than nginx's default upstream keepalive_timeout (60 s), so
// nginx closes first and never sends on a connection bridge just closed.
const defaultIdleTimeout = 120 * time.Second

// DefaultSocketMode is the mode of a unix socket when ListenConfig.Mode is
// 0: its owner and group may connect, nobody else. Connecting needs write
// permission on the socket file; a uwsgi peer is trusted with REMOTE_ADDR,
// HTTPS, REMOTE_USER and the rest (docs/security.md), so "anyone on the
// host" is never the default.
const DefaultSocketMode os.FileMode = 0o660

// ListenConfig says how Listen makes a unix socket file (TCP listeners
// ignore that), and where it finds sockets passed by systemd.
type ListenConfig struct {
	// Mode is the socket file's permission bits (0: DefaultSocketMode).
	Mode os.FileMode
	// Group, if set, is the group (name or numeric id) the socket file is
	// given, e.g. "www-data" so that nginx's workers may connect. bridge
	// must be root or a member of that group.
	Group string
	// Inherited are the sockets passed by socket activation, for
	// "fd:NAME" addresses; Mode and Group do not apply to them (systemd's
	// SocketMode= and SocketGroup= did).
	Inherited *Inherited
}

// LookupGroup resolves a group name, or else a numeric id, to a gid. A
// number that names no group in the group database is taken as it is.
func LookupGroup(group string) (int, error) {
	if group == "" {
		return -1, errors.New("empty group name")
	}
	if g, err := user.LookupGroup(group); err == nil {
		return strconv.Atoi(g.Gid)
	}
	if id, err := strconv.ParseUint(group, 10, 31); err == nil {
		return int(id), nil
	}
	return -1, fmt.Errorf("unknown group %q (not in the group database, and not a numeric id)", group)
}

// Listen opens addr: "unix:/path", "host:port", or "fd:NAME" for a socket
// systemd passed (cfg.Inherited.Take). A stale unix socket file
// (nobody accepting on it) is replaced; a live one is "address in use". A
// unix socket gets cfg's group, then cfg's mode, before Listen returns; it
// is created with no group or other permissions, so nobody outside them
// can connect in between.
func Listen(addr string, cfg ListenConfig) (net.Listener, error) {
	if name, ok := strings.CutPrefix(addr, FDPrefix); ok {
		return cfg.Inherited.Take(name)
	}
	if path, ok := strings.CutPrefix(addr, "unix:"); ok {
		return listenUnix(addr, path, cfg)
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return nil, fmt.Errorf("listen %q: want host:port, unix:/path or fd:NAME", addr)
	}
	ln, err := net.Listen("tcp", addr)
	if errors.Is(err, syscall.EADDRINUSE) {
		return nil, fmt.Errorf("listen %s: address already in use", addr)
	}
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", addr, err)
	}
	return ln, nil
}

func listenUnix(addr, path string, cfg ListenConfig) (net.Listener, error) {
	if path == "" {
		return nil, fmt.Errorf("listen %s: empty socket path", addr)
	}
	gid := -1
	if cfg.Group != "" {
		var err error
		if gid, err = LookupGroup(cfg.Group); err != nil {
			return nil, fmt.Errorf("listen %s: --socket-group: %w", addr, err)
		}
	}
	mode := cfg.Mode
	if mode == 0 {
		mode = DefaultSocketMode
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("listen %s: %s exists and is not a socket", addr, path)
		}
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("listen %s: address already in use (another server is accepting on it)", addr)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("listen %s: remove stale socket: %w", addr, err)
		}
	}
	ln, err := bindPrivate(path)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", addr, err)
	}
	if gid >= 0 {
		if err := os.Chown(path, -1, gid); err != nil {
			ln.Close()
			return nil, fmt.Errorf("listen %s: give the socket to group %s: %w (bridge must run as root or be a member of that group)", addr, cfg.Group, errors.Unwrap(err))
		}
	}
	if err := os.Chmod(path, mode.Perm()); err != nil {
		ln.Close()
		return nil, fmt.Errorf("listen %s: chmod: %w", addr, err)
	}
	return ln, nil
}

// umaskMu serialises bindPrivate's umask changes within bridge.
var umaskMu sync.Mutex

// bindPrivate binds a unix socket that only its owner can connect to until
// Listen sets its group and mode: bind(2) makes the file 0777 less the
// umask, and a process-wide umask of 077 for the duration of the call is
// the only way to make that atomic. (Files other goroutines create in that
// instant come out private too, never more open; serve binds its listeners
// before it starts anything else.)
func bindPrivate(path string) (net.Listener, error) {
	umaskMu.Lock()
	old := syscall.Umask(0o077)
	ln, err := net.Listen("unix", path)
	syscall.Umask(old)
	umaskMu.Unlock()
	return ln, err
}
