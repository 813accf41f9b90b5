package front

import (
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
)

// Socket activation (systemd.socket(5), sd_listen_fds(3)): systemd opens
// the listening sockets, passes them as fds 3, 4, ... and says so in
// LISTEN_FDS (how many), LISTEN_PID (for which process) and LISTEN_FDNAMES
// (their FileDescriptorName=, colon-separated). A listener address
// "fd:NAME" takes the passed socket of that name. systemd keeps its own
// copy of each socket, so connections that arrive while bridge restarts
// wait in the kernel's backlog instead of being refused.

// FDPrefix starts a listener address that names a socket passed by
// systemd: "fd:NAME", NAME being the socket's FileDescriptorName= (by
// default the .socket unit's name, e.g. "bridge.socket").
const FDPrefix = "fd:"

// listenFDsStart is the first passed fd (SD_LISTEN_FDS_START).
const listenFDsStart = 3

// Inherited is the set of sockets passed to bridge, taken by name.
type Inherited struct {
	fds   []inheritedFD
	taken map[int]bool
	// why explains an empty set: not activated, or activated for another
	// process; shown when a listener asks for a socket.
	why string
}

type inheritedFD struct {
	fd   int
	name string
}

// activationVars are the variables sd_listen_fds reads, and unsets so that
// the runners bridge starts do not take the sockets as theirs.
var activationVars = []string{"LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"}

// InheritSockets reads the socket-activation variables as sd_listen_fds
// does and unsets them. The sockets count only if LISTEN_PID is this
// process; otherwise they belong to another process (a parent that did
// not exec us directly) and are left alone. The fds are made close-on-exec
// so runners never inherit them. An error is a malformed LISTEN_FDS.
func InheritSockets() (*Inherited, error) {
	pidVar, pidSet := os.LookupEnv("LISTEN_PID")
	fdsVar, fdsSet := os.LookupEnv("LISTEN_FDS")
	namesVar, namesSet := os.LookupEnv("LISTEN_FDNAMES")
	for _, v := range activationVars {
		os.Unsetenv(v)
	}
	in := &Inherited{taken: map[int]bool{}}
	if !pidSet || !fdsSet {
		in.why = "bridge was not started by systemd socket activation (LISTEN_PID and LISTEN_FDS are not set)"
		return in, nil
	}
	pid, err := strconv.Atoi(pidVar)
	if err != nil || pid <= 0 {
		return nil, fmt.Errorf("socket activation: LISTEN_PID=%q is not a process id", pidVar)
	}
	if pid != os.Getpid() {
		in.why = fmt.Sprintf("the sockets systemd passed are for process %d (LISTEN_PID), not bridge (pid %d), so they are ignored as sd_listen_fds(3) does: start bridge directly with Exec, not through a wrapper that forks", pid, os.Getpid())
		return in, nil
	}
	n, err := strconv.Atoi(fdsVar)
	if err != nil || n < 0 {
		return nil, fmt.Errorf("socket activation: LISTEN_FDS=%q is not a number of sockets", fdsVar)
	}
	var names []string
	if namesSet {
		names = strings.Split(namesVar, ":")
		if len(names) != n {
			// sd_listen_fds_with_names fails here too.
			return nil, fmt.Errorf("socket activation: LISTEN_FDNAMES=%q has %d names for LISTEN_FDS=%d sockets", namesVar, len(names), n)
		}
	}
	for i := range n {
		fd := listenFDsStart + i
		name := "unknown" // systemd's name when it gives none
		if names != nil {
			name = names[i]
		}
		syscall.CloseOnExec(fd)
		in.fds = append(in.fds, inheritedFD{fd: fd, name: name})
	}
	if n == 0 {
		in.why = "systemd passed no sockets (LISTEN_FDS=0)"
	}
	return in, nil
}

// Names lists the passed sockets' names, in fd order.
func (in *Inherited) Names() []string {
	var out []string
	for _, f := range in.fds {
		out = append(out, f.name)
	}
	return out
}

// Take returns the listener of the passed socket named name, once. It must
// be a listening stream socket (unix or TCP): a .socket unit with
// Accept=yes or a datagram socket is refused with the reason.
func (in *Inherited) Take(name string) (net.Listener, error) {
	if in == nil {
		in = &Inherited{why: "socket activation is not read by this command"}
	}
	addr := FDPrefix + name
	if name == "" {
		return nil, fmt.Errorf("listen %s: give the socket's name, fd:NAME, as in FileDescriptorName=NAME of the .socket unit", addr)
	}
	i := slices.IndexFunc(in.fds, func(f inheritedFD) bool { return f.name == name && !in.taken[f.fd] })
	if i < 0 {
		switch {
		case len(in.fds) == 0:
			return nil, fmt.Errorf("listen %s: no socket named %q was passed: %s", addr, name, in.why)
		case slices.ContainsFunc(in.fds, func(f inheritedFD) bool { return f.name == name }):
			return nil, fmt.Errorf("listen %s: the socket named %q is already used by another listener; systemd passed one", addr, name)
		default:
			return nil, fmt.Errorf("listen %s: systemd passed no socket named %q, only %s: set FileDescriptorName=%s in the .socket unit, or use one of those names", addr, name, strings.Join(quoteAll(in.Names()), ", "), name)
		}
	}
	fd := in.fds[i].fd
	if err := checkListening(fd); err != nil {
		return nil, fmt.Errorf("listen %s (fd %d): %w", addr, fd, err)
	}
	f := os.NewFile(uintptr(fd), addr)
	ln, err := net.FileListener(f) // a dup; f's own fd is closed below
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("listen %s (fd %d): %w", addr, fd, err)
	}
	in.taken[fd] = true
	if u, ok := ln.(*net.UnixListener); ok {
		// systemd made the socket file and owns it: its mode and group are
		// the unit's SocketMode= and SocketGroup=, and it must outlive
		// bridge so a restart refuses nobody.
		u.SetUnlinkOnClose(false)
	}
	return ln, nil
}

// Unused lists the passed sockets no listener took, as "NAME (fd N)", and
// closes them: nobody will accept on them through bridge.
func (in *Inherited) Unused() []string {
	var out []string
	for _, f := range in.fds {
		if !in.taken[f.fd] {
			out = append(out, fmt.Sprintf("%s (fd %d)", f.name, f.fd))
			in.taken[f.fd] = true
			syscall.Close(f.fd)
		}
	}
	return out
}

// checkListening refuses an fd that is not a listening stream socket.
func checkListening(fd int) error {
	typ, err := syscall.GetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_TYPE)
	if err != nil {
		return fmt.Errorf("not a socket (%w)", err)
	}
	if typ != syscall.SOCK_STREAM {
		return errors.New("not a stream socket: use ListenStream= in the .socket unit")
	}
	if acc, err := syscall.GetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_ACCEPTCONN); err == nil && acc == 0 {
		return errors.New("not a listening socket: the .socket unit must not set Accept=yes")
	}
	return nil
}

func quoteAll(names []string) []string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = strconv.Quote(n)
	}
	return out
}
