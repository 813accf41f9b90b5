package conform

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"google.golang.org/protobuf/types/known/emptypb"
)

func checkStackDump(k *kit) error {
	p, err := k.runner()
	if err != nil {
		return err
	}
	id := k.id("stuck")
	f, err := k.begin(p, id, req{method: "GET", path: "/sleep?ms=1500"}, 10*time.Second, nil)
	if err != nil {
		return err
	}
	defer f.wait()
	time.Sleep(200 * time.Millisecond) // the request is in the app by now
	if err := syscall.Kill(p.PID(), syscall.SIGUSR1); err != nil {
		return err
	}
	dumps := k.logs.waitLog(p.name, 3*time.Second, func(l map[string]any) bool {
		m, _ := l["message"].(string)
		tb, _ := l["traceback"].(string)
		return m == "stack dump (SIGUSR1)" && tb != ""
	})
	if len(dumps) == 0 {
		return fmt.Errorf("C18: no log line {\"message\":\"stack dump (SIGUSR1)\",\"traceback\":…} within 3 s of SIGUSR1")
	}
	f.wait()
	if p.Exited() {
		return fmt.Errorf("C18: the runner exited after SIGUSR1; it must keep serving")
	}
	if err := wantBody(k.get(p, k.id("after-dump"), "/hello"), "hello"); err != nil {
		return fmt.Errorf("C18: the runner must keep serving after a stack dump: %w", err)
	}
	return nil
}

// checkEnvironment starts the runner by hand with a wrong cookie and with a
// protocol version it does not speak: it must refuse, without a handshake.
func checkEnvironment(k *kit) error {
	for _, c := range []struct{ what, env string }{
		{"a wrong magic cookie", "BRIDGE_PLUGIN=not-runner-v1"},
		{"PLUGIN_PROTOCOL_VERSIONS=2", "PLUGIN_PROTOCOL_VERSIONS=2"},
	} {
		dir, err := os.MkdirTemp("", "bridge-conform-")
		if err != nil {
			return err
		}
		out, code, err := k.runBare(dir, c.env)
		os.RemoveAll(dir)
		if err != nil {
			return fmt.Errorf("C3: started with %s: %w", c.what, err)
		}
		if strings.Contains(out, "|grpc") || code == 0 {
			return fmt.Errorf("C3: started with %s, the runner must exit non-zero without a handshake line: exit %d, stdout %q", c.what, code, out)
		}
	}
	return nil
}

// runBare runs the runner command with bridge's handshake environment
// changed by override, and returns its stdout and exit code.
func (k *kit) runBare(sockDir, override string) (string, int, error) {
	ctx, cancel := context.WithTimeout(k.ctx, 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, k.cfg.Command.Path, k.cfg.Command.Args...)
	cmd.Dir = k.cfg.Command.Dir
	cmd.Env = append(os.Environ(), k.cfg.Command.Env...)
	cmd.Env = append(cmd.Env, "BRIDGE_PLUGIN=runner-v1", "PLUGIN_PROTOCOL_VERSIONS=1",
		"PLUGIN_UNIX_SOCKET_DIR="+sockDir, "BRIDGE_THREADS=1", "BRIDGE_SLOTS=1", "BRIDGE_WORKERS=1", override)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return "", 0, err
	}
	if err := cmd.Start(); err != nil {
		return "", 0, err
	}
	defer func() { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }()
	var out strings.Builder
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		out.WriteString(sc.Text() + "\n")
		if strings.Contains(sc.Text(), "|grpc") {
			return out.String(), -1, nil // it handshook: the caller fails it
		}
	}
	err = cmd.Wait()
	if ctx.Err() != nil {
		return out.String(), -1, fmt.Errorf("it neither exited nor handshook within 20 s")
	}
	if ee, ok := err.(*exec.ExitError); ok {
		return out.String(), ee.ExitCode(), nil
	}
	return out.String(), 0, err
}

// drains checks that a runner asked to stop (the Shutdown RPC bridge's
// go-plugin client sends, or SIGTERM) finishes the request in flight, then
// exits.
func drains(how string) func(*kit) error {
	id := "C19"
	if how == "SIGTERM" {
		id = "C20"
	}
	return func(k *kit) error {
		p, err := k.start()
		if err != nil {
			return err
		}
		defer p.Kill()
		rid := k.id("drain")
		f, err := k.begin(p, rid, req{method: "GET", path: "/sleep?ms=800"}, 15*time.Second, nil)
		if err != nil {
			return err
		}
		time.Sleep(200 * time.Millisecond) // the request is in the app by now
		if how == "SIGTERM" {
			err = syscall.Kill(p.PID(), syscall.SIGTERM)
		} else {
			go func() {
				ctx, cancel := context.WithTimeout(k.ctx, 10*time.Second)
				defer cancel()
				_ = p.Conn().Invoke(ctx, "/plugin.GRPCController/Shutdown", &emptypb.Empty{}, &emptypb.Empty{})
			}()
		}
		if err != nil {
			return err
		}
		if err := wantBody(f.wait(), "slept"); err != nil {
			return fmt.Errorf("%s: after %s, the request in flight must finish: %w", id, how, err)
		}
		return waitExit(p, id, how)
	}
}

// waitExit waits up to 10 s for the runner process to end.
func waitExit(p *proc, id, after string) error {
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
		if p.Exited() {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("%s: the runner was still running 10 s after %s", id, after)
}

func checkRetire(k *kit) error {
	p, err := k.start()
	if err != nil {
		return err
	}
	defer p.Kill()
	rep := k.get(p, k.id("retire"), "/retire")
	if err := wantBody(rep, "bye"); err != nil {
		return fmt.Errorf("C21: %w", err)
	}
	if !rep.last().Retire {
		return broken("C21: the app asked to retire: the end frame must carry retire", rep)
	}
	return waitExit(p, "C21", "a response with retire")
}
