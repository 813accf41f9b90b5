package front

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// passed is a socket as systemd would pass it: its own fd (a dup of ln's),
// named name. ln itself stays open, as systemd's copy does.
func passed(t *testing.T, ln net.Listener, name string) inheritedFD {
	t.Helper()
	f, err := ln.(interface{ File() (*os.File, error) }).File()
	if err != nil {
		t.Fatal(err)
	}
	fd, err := syscall.Dup(int(f.Fd()))
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	return inheritedFD{fd: fd, name: name}
}

func inheritedOf(fds ...inheritedFD) *Inherited {
	return &Inherited{fds: fds, taken: map[int]bool{}}
}

// An inherited unix socket keeps systemd's mode (SocketMode=), whatever
// --socket-mode says, and its file stays when bridge closes it: systemd
// owns it and keeps accepting into its backlog across a restart.
func TestInheritedUnixSocketKeepsModeAndFile(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "app.sock")
	sd, err := net.Listen("unix", sock) // systemd's copy
	if err != nil {
		t.Fatal(err)
	}
	defer sd.Close()
	if err := os.Chmod(sock, 0o640); err != nil {
		t.Fatal(err)
	}
	in := inheritedOf(passed(t, sd, "uwsgi"))
	ln, err := Listen("fd:uwsgi", ListenConfig{Mode: 0o600, Inherited: in})
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(sock); err != nil || fi.Mode().Perm() != 0o640 {
		t.Fatalf("inherited socket's mode changed: %v %v, want 0640 as systemd set it", fi.Mode(), err)
	}
	go func() {
		c, err := net.Dial("unix", sock)
		if err == nil {
			c.Write([]byte("x"))
			c.Close()
		}
	}()
	c, err := ln.Accept()
	if err != nil {
		t.Fatalf("accept on the inherited socket: %v", err)
	}
	c.Close()
	ln.Close()
	if _, err := os.Stat(sock); err != nil {
		t.Fatalf("closing the inherited listener removed systemd's socket file: %v", err)
	}
	// systemd's copy still listens: the next bridge takes over from here.
	c2, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatalf("after bridge closed its copy, connecting to systemd's socket: %v", err)
	}
	c2.Close()
}

func TestInheritedTCPSocket(t *testing.T) {
	sd, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer sd.Close()
	in := inheritedOf(passed(t, sd, "other"), passed(t, sd, "http"))
	ln, err := Listen("fd:http", ListenConfig{Inherited: in})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if ln.Addr().String() != sd.Addr().String() {
		t.Fatalf("inherited listener on %s, want %s", ln.Addr(), sd.Addr())
	}
	if got := in.Unused(); len(got) != 1 || !strings.HasPrefix(got[0], "other (fd ") {
		t.Fatalf("Unused = %q, want the one named other", got)
	}
	if got := in.Unused(); len(got) != 0 {
		t.Fatalf("Unused twice = %q, want nothing the second time", got)
	}
}

// Every way an fd:NAME listener can fail says what to do about it.
func TestInheritedErrors(t *testing.T) {
	sd, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer sd.Close()
	in := inheritedOf(passed(t, sd, "uwsgi"), passed(t, sd, "admin"))
	if _, err := Listen("fd:uwsgi", ListenConfig{Inherited: in}); err != nil {
		t.Fatal(err)
	}
	check := func(addr string, in *Inherited, want ...string) {
		t.Helper()
		ln, err := Listen(addr, ListenConfig{Inherited: in})
		if err == nil {
			ln.Close()
			t.Fatalf("Listen(%s): no error", addr)
		}
		for _, w := range want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("Listen(%s) error %q lacks %q", addr, err, w)
			}
		}
	}
	check("fd:uwsgi", in, "already used by another listener")
	check("fd:web", in, `no socket named "web"`, `only "uwsgi", "admin"`, "FileDescriptorName=web")
	check("fd:", in, "fd:NAME")
	check("fd:uwsgi", &Inherited{why: "bridge was not started by systemd socket activation"}, "not started by systemd")
	check("fd:uwsgi", nil, "not read")

	// A datagram socket, and a stream socket that does not listen.
	dg, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_DGRAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	st, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	bad := inheritedOf(inheritedFD{dg, "dgram"}, inheritedFD{st, "conn"})
	check("fd:dgram", bad, "ListenStream=")
	check("fd:conn", bad, "Accept=yes")
	syscall.Close(dg)
	syscall.Close(st)
}

// sd_listen_fds semantics: the variables are always unset, sockets meant
// for another pid are ignored with the reason kept, malformed values fail.
func TestInheritSocketsEnvironment(t *testing.T) {
	set := func(pid, fds, names string) {
		t.Setenv("LISTEN_PID", pid)
		t.Setenv("LISTEN_FDS", fds)
		if names != "" {
			t.Setenv("LISTEN_FDNAMES", names)
		}
	}
	unset := func() {
		t.Helper()
		for _, v := range activationVars {
			if _, ok := os.LookupEnv(v); ok {
				t.Errorf("%s still set: runners would inherit it", v)
			}
		}
	}

	set("1", "2", "a:b") // pid 1 is never a test binary
	in, err := InheritSockets()
	if err != nil {
		t.Fatal(err)
	}
	unset()
	if len(in.Names()) != 0 || !strings.Contains(in.why, "for process 1 (LISTEN_PID), not bridge") {
		t.Fatalf("sockets for pid 1: names %q, why %q; want none and the reason", in.Names(), in.why)
	}

	me := strconv.Itoa(os.Getpid())
	set(me, "2", "a:b:c")
	if _, err := InheritSockets(); err == nil || !strings.Contains(err.Error(), "3 names for LISTEN_FDS=2") {
		t.Fatalf("3 names for 2 fds: %v", err)
	}
	unset()
	set("x", "1", "")
	if _, err := InheritSockets(); err == nil || !strings.Contains(err.Error(), "LISTEN_PID=\"x\"") {
		t.Fatalf("LISTEN_PID=x: %v", err)
	}
	set(me, "-1", "")
	if _, err := InheritSockets(); err == nil || !strings.Contains(err.Error(), "LISTEN_FDS=\"-1\"") {
		t.Fatalf("LISTEN_FDS=-1: %v", err)
	}
	set(me, "0", "")
	if in, err := InheritSockets(); err != nil || len(in.Names()) != 0 {
		t.Fatalf("LISTEN_FDS=0: %v %q", err, in.Names())
	}

	os.Unsetenv("LISTEN_PID")
	os.Unsetenv("LISTEN_FDS")
	in, err = InheritSockets()
	if err != nil || !strings.Contains(in.why, "not started by systemd socket activation") {
		t.Fatalf("no activation: %v, why %q", err, in.why)
	}
}
