package front_test

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"bridge/bridge/front"
)

func socketStat(t *testing.T, path string) (os.FileMode, *syscall.Stat_t) {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&os.ModeSocket == 0 {
		t.Fatalf("%s is not a socket: %v", path, fi.Mode())
	}
	return fi.Mode().Perm(), fi.Sys().(*syscall.Stat_t)
}

// Issue 14: a unix socket is 0660 unless told otherwise, whatever the
// umask (it used to be 0666: any local user could speak uwsgi to bridge and
// set REMOTE_ADDR, HTTPS and REMOTE_USER).
func TestListenUnixDefaultMode(t *testing.T) {
	old := syscall.Umask(0) // the most permissive umask a service may have
	defer syscall.Umask(old)
	sock := filepath.Join(t.TempDir(), "s.sock")
	ln, err := front.Listen("unix:"+sock, front.ListenConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if mode, st := socketStat(t, sock); mode != 0o660 || int(st.Gid) != os.Getegid() {
		t.Fatalf("socket mode %o gid %d, want 0660 and bridge's group %d", mode, st.Gid, os.Getegid())
	}
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatalf("owner cannot connect: %v", err)
	}
	c.Close()

	sock2 := filepath.Join(t.TempDir(), "s2.sock")
	ln2, err := front.Listen("unix:"+sock2, front.ListenConfig{Mode: 0o600})
	if err != nil {
		t.Fatal(err)
	}
	defer ln2.Close()
	if mode, _ := socketStat(t, sock2); mode != 0o600 {
		t.Fatalf("--socket-mode 0600: got %o", mode)
	}
}

// --socket-group: the socket is given that group, by name or by id.
func TestListenUnixGroup(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to give a socket to a group bridge's user is not in")
	}
	for _, group := range []string{"nogroup", "65534"} {
		sock := filepath.Join(t.TempDir(), "s.sock")
		ln, err := front.Listen("unix:"+sock, front.ListenConfig{Group: group})
		if err != nil {
			t.Fatalf("group %s: %v", group, err)
		}
		mode, st := socketStat(t, sock)
		ln.Close()
		if mode != 0o660 || st.Gid != 65534 {
			t.Errorf("group %s: mode %o gid %d, want 0660 and 65534", group, mode, st.Gid)
		}
	}
}

// An unknown group is an error before any socket file is made.
func TestListenUnixBadGroup(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "s.sock")
	ln, err := front.Listen("unix:"+sock, front.ListenConfig{Group: "no-such-group-for-bridge"})
	if err == nil {
		ln.Close()
		t.Fatal("no error for an unknown group")
	}
	if !strings.Contains(err.Error(), `unknown group "no-such-group-for-bridge"`) {
		t.Errorf("error %q does not name the unknown group", err)
	}
	if _, err := os.Lstat(sock); !os.IsNotExist(err) {
		t.Errorf("socket file left behind: %v", err)
	}
}

// A drain closes the listeners first: Serve then returns nil on both
// fronts, so serve logs no "listener failed" at every shutdown.
func TestServeEndsCleanlyWhenListenerCloses(t *testing.T) {
	for kind, build := range front.Kinds {
		f := build(front.Config{Handler: &front.Handler{}})
		ln, err := f.Listen("127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- f.Serve(ln) }()
		ln.Close()
		if err := <-done; err != nil {
			t.Errorf("%s: Serve after its listener closed = %v, want nil", kind, err)
		}
	}
}
