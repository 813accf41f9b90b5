package deploy

import (
	"net/http"
	"os/exec"
	"syscall"
	"testing"
	"time"
)

// serveBridge starts cmd (a bridge serve), keeps its output for the test's
// log if the test fails, SIGTERMs it when the test ends (failing the test
// if it does not stop within 10 s) and waits until adminAddr answers
// /readyz with 200. It returns a channel closed when bridge exits.
func serveBridge(t *testing.T, cmd *exec.Cmd, adminAddr, what string) <-chan struct{} {
	t.Helper()
	log := &lockedLog{}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
			t.Errorf("bridge did not stop within 10s of SIGTERM")
		}
		if t.Failed() {
			t.Logf("bridge log:\n%s", log.String())
		}
	})
	client := &http.Client{Timeout: 10 * time.Second}
	waitFor(t, done, what, func() bool {
		resp, err := client.Get("http://" + adminAddr + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	return done
}
