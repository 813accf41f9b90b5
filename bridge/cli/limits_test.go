package cli

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"bridge/bridge/testrunner"
)

// The limit flags reach the fronts: --max-headers (431), --max-body-size
// (413), and --body-timeout (a stalled upload gets 408), through a real
// serve with both fronts.
func TestServeLimitFlags(t *testing.T) {
	t.Setenv(testrunner.EnvVar, "1")
	addr := freeAddr(t)
	sock := t.TempDir() + "/u.sock"
	logs, stop := startServe(t, []string{"serve", "--runner", "exec:" + os.Args[0], "--http", addr, "--uwsgi", "unix:" + sock,
		"--workers", "1", "--max-headers", "3", "--max-body-size", "1K", "--body-timeout", "300ms",
		"--header-timeout", "1s", "--write-timeout", "1s"})
	defer func() {
		stop()
		if t.Failed() {
			t.Logf("log:\n%s", logs.String())
		}
	}()
	client := &http.Client{Timeout: 10 * time.Second}
	deadline := time.Now().Add(20 * time.Second)
	for status(t, client, "http://"+addr+"/hello") != 200 {
		if time.Now().After(deadline) {
			t.Fatal("bridge never served /hello")
		}
		time.Sleep(50 * time.Millisecond)
	}
	raw := func(req string) int {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.WriteString(c, req); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("%.30q: %v", req, err)
		}
		return resp.StatusCode
	}
	for _, tc := range []struct {
		req  string
		want int
	}{
		{"GET /hello HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n", 200},
		{"GET /hello HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n", 431},
		{fmt.Sprintf("POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 2048\r\n\r\n%s", strings.Repeat("x", 2048)), 413},
		{"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\nx", 408},
	} {
		if got := raw(tc.req); got != tc.want {
			t.Errorf("%.60q: %d, want %d", tc.req, got, tc.want)
		}
	}
	fi, err := os.Stat(sock)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o660 {
		t.Errorf("uwsgi socket mode %o, want 0660 by default", perm)
	}
}
