package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// proc is a process the soak started; it is stopped by its pid.
type proc struct {
	name   string
	cmd    *exec.Cmd
	done   chan struct{}
	err    error     // from Wait, once done is closed
	exited time.Time // when it exited
	log    *os.File
}

// startProc starts argv in its own process group (a Ctrl-C on the terminal
// reaches the soak alone, which then stops everything in order), with its
// output in logPath. Pdeathsig sends SIGTERM if the soak itself dies.
func startProc(name string, argv []string, dir, logPath string) (*proc, error) {
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, done: make(chan struct{}), log: f}
	go func() {
		p.err = cmd.Wait()
		p.exited = time.Now()
		f.Close()
		close(p.done)
	}()
	return p, nil
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) alive() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// stop sends sig, waits up to wait, then SIGKILLs; it reports whether the
// process had to be killed.
func (p *proc) stop(sig syscall.Signal, wait time.Duration) (killed bool) {
	if !p.alive() {
		return false
	}
	_ = p.cmd.Process.Signal(sig)
	return p.waitOrKill(wait)
}

// waitOrKill waits up to wait for the process to exit, then SIGKILLs it;
// it reports whether it had to.
func (p *proc) waitOrKill(wait time.Duration) (killed bool) {
	select {
	case <-p.done:
		return false
	case <-time.After(wait):
	}
	_ = p.cmd.Process.Kill()
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
	}
	return true
}

// pidInfo identifies a process beyond its pid (pids are reused): its start
// time in clock ticks after boot, /proc/PID/stat field 22.
type pidInfo struct {
	PID   int
	Comm  string
	Start uint64
	PPID  int
	State string
}

// readStat parses /proc/PID/stat.
func readStat(pid int) (pidInfo, bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return pidInfo{}, false
	}
	s := string(b)
	open, close := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 0 || close < open {
		return pidInfo{}, false
	}
	f := strings.Fields(s[close+1:])
	// f[0] is field 3 (state), f[1] field 4 (ppid), f[19] field 22 (starttime)
	if len(f) < 20 {
		return pidInfo{}, false
	}
	ppid, _ := strconv.Atoi(f[1])
	start, _ := strconv.ParseUint(f[19], 10, 64)
	return pidInfo{PID: pid, Comm: s[open+1 : close], Start: start, PPID: ppid, State: f[0]}, true
}

// children lists the live (not zombie) child processes of pid, by pid.
// It reads /proc/PID/task/*/children, or scans every /proc/*/stat for the
// parent pid where the kernel lacks that file.
func children(pid int) []pidInfo {
	var pids []int
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	if len(tasks) > 0 {
		for _, t := range tasks {
			b, err := os.ReadFile(t)
			if err != nil {
				continue
			}
			for _, w := range strings.Fields(string(b)) {
				if n, err := strconv.Atoi(w); err == nil {
					pids = append(pids, n)
				}
			}
		}
	} else {
		ents, _ := os.ReadDir("/proc")
		for _, e := range ents {
			n, err := strconv.Atoi(e.Name())
			if err != nil {
				continue
			}
			if st, ok := readStat(n); ok && st.PPID == pid {
				pids = append(pids, n)
			}
		}
	}
	sort.Ints(pids)
	var out []pidInfo
	for _, n := range pids {
		if st, ok := readStat(n); ok && st.PPID == pid && st.State != "Z" {
			out = append(out, st)
		}
	}
	return out
}

// same reports whether the process in info still runs (same pid, same
// start time, not a zombie).
func same(info pidInfo) bool {
	st, ok := readStat(info.PID)
	return ok && st.Start == info.Start && st.State != "Z"
}

// killLeftovers gives the processes in infos up to wait to exit, then
// SIGKILLs those that still run, by pid (checked against their start
// time), and returns how many it killed.
func killLeftovers(infos []pidInfo, wait time.Duration) int {
	for deadline := time.Now().Add(wait); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		alive := false
		for _, in := range infos {
			alive = alive || same(in)
		}
		if !alive {
			return 0
		}
	}
	n := 0
	for _, in := range infos {
		if same(in) {
			_ = syscall.Kill(in.PID, syscall.SIGKILL)
			n++
		}
	}
	return n
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
