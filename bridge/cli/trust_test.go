package cli

import (
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"bridge/bridge/testrunner"
)

// Issue 14: the trust flags are checked before anything starts.
func TestServeTrustFlagErrors(t *testing.T) {
	dir := t.TempDir()
	token := func(name, content string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	base := []string{"serve", "--runner", "python:app", "--uwsgi", "unix:" + filepath.Join(dir, "s.sock")}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--socket-group", "no-such-group-for-bridge"}, `--socket-group no-such-group-for-bridge: unknown group "no-such-group-for-bridge"`},
		{[]string{"--socket-mode", "0"}, "--socket-mode \"0\": want an octal mode"},
		{[]string{"--socket-mode", "1777"}, "--socket-mode \"1777\": want an octal mode"},
		{[]string{"--admin-reload"}, "give --admin ADDR too"},
		{[]string{"--admin-token-file", token("ok", "tok\n", 0o600)}, "give --admin ADDR too"},
		{[]string{"--admin", "127.0.0.1:0", "--admin-token-file", token("open", "tok\n", 0o644)}, "lets group or others read or write it"},
		{[]string{"--admin", "127.0.0.1:0", "--admin-token-file", token("empty", "\n", 0o600)}, "empty: want a token"},
		{[]string{"--admin", "127.0.0.1:0", "--admin-token-file", filepath.Join(dir, "missing")}, "no such file"},
	} {
		args := append(append([]string{}, base...), tc.args...)
		err := Run(context.Background(), args, io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), tc.want) || ExitCode(err) != 2 {
			t.Errorf("%v: got %v (exit %d), want %q (exit 2)", tc.args, err, ExitCode(err), tc.want)
		}
	}
	if _, err := os.Lstat(filepath.Join(dir, "s.sock")); !os.IsNotExist(err) {
		t.Errorf("a refused configuration left a socket: %v", err)
	}
}

// The flags wired through serve: the uwsgi socket is 0660 (and given
// --socket-group), POST /reload wants the token and no browser, reloads
// asked for at once (POSTs and SIGHUP) share generations, and a failed
// reload's reason is in the log, not in the answer.
func TestServeSocketAndAdminWiring(t *testing.T) {
	t.Setenv(testrunner.EnvVar, "1")
	// Each runner takes 300 ms to start, so a reload lasts long enough for
	// the others to arrive while it runs.
	t.Setenv(testrunner.StartDelayEnvVar, "300ms")
	failFile := filepath.Join(t.TempDir(), "fail")
	t.Setenv(testrunner.FailFileEnvVar, failFile)
	dir := t.TempDir()
	sock := filepath.Join(dir, "u.sock")
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte("wiring-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	httpAddr, adminAddr := freeAddr(t), freeAddr(t)
	args := []string{"serve", "--runner", "exec:" + os.Args[0], "--http", httpAddr, "--uwsgi", "unix:" + sock,
		"--workers", "1", "--admin", adminAddr, "--admin-token-file", tokenFile}
	wantGid := os.Getegid()
	if os.Geteuid() == 0 {
		args, wantGid = append(args, "--socket-group", "nogroup"), 65534
	}
	logs, stop := startServe(t, args)
	defer stop()
	waitReady(t, logs)

	fi, err := os.Lstat(sock)
	if err != nil {
		t.Fatal(err)
	}
	if st := fi.Sys().(*syscall.Stat_t); fi.Mode().Perm() != 0o660 || int(st.Gid) != wantGid {
		t.Errorf("uwsgi socket: mode %o gid %d, want 0660 and %d", fi.Mode().Perm(), st.Gid, wantGid)
	}

	client := &http.Client{Timeout: 30 * time.Second}
	reload := func(hdr map[string]string) (int, string) {
		req, _ := http.NewRequest("POST", "http://"+adminAddr+"/reload", nil)
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Error(err)
			return 0, ""
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	auth := map[string]string{"Authorization": "Bearer wiring-token"}
	if code, body := reload(nil); code != 401 {
		t.Errorf("no token: %d %q", code, body)
	}
	if code, body := reload(map[string]string{"Authorization": "Bearer wrong"}); code != 401 {
		t.Errorf("wrong token: %d %q", code, body)
	}
	if code, body := reload(map[string]string{"Authorization": "Bearer wiring-token", "Origin": "http://" + adminAddr}); code != 403 {
		t.Errorf("token from a web page: %d %q", code, body)
	}
	if code, body := reload(auth); code != 200 || body != "reloaded: generation 2 serving\n" {
		t.Fatalf("reload: %d %q", code, body)
	}

	// One POST starts generation 3; four POSTs and a SIGHUP arrive while it
	// starts and share generation 4.
	var wg sync.WaitGroup
	bodies := make(chan string, 5)
	post := func() {
		defer wg.Done()
		code, body := reload(auth)
		if code != 200 {
			t.Errorf("concurrent reload: %d %q", code, body)
		}
		bodies <- body
	}
	wg.Add(1)
	go post()
	time.Sleep(100 * time.Millisecond)
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	for range 4 {
		wg.Add(1)
		go post()
	}
	wg.Wait()
	close(bodies)
	seen := map[string]int{}
	for b := range bodies {
		seen[b]++
	}
	if seen["reloaded: generation 3 serving\n"] != 1 || seen["reloaded: generation 4 serving\n"] != 4 {
		t.Errorf("5 POSTs and a SIGHUP at once: %v, want one generation 3 and four generation 4", seen)
	}
	time.Sleep(100 * time.Millisecond) // a stray extra reload would have begun
	if gen := generation(t, client, adminAddr); gen != 4 {
		t.Errorf("generation %d after 5 POSTs and a SIGHUP at once, want 4", gen)
	}

	// A reload whose app fails: the answer is generic, the reason logged.
	if err := os.WriteFile(failFile, []byte("KeyError: DATABASE_URL=postgres://app:hunter2@db/app"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, body := reload(auth)
	if code != 500 || strings.Contains(body, "hunter2") || !strings.HasPrefix(body, "reload failed: see bridge's log") {
		t.Errorf("failed reload: %d %q", code, body)
	}
	if !strings.Contains(logs.String(), "hunter2") {
		t.Errorf("the reason of the failed reload is not in the log:\n%s", logs)
	}
}

var generationRE = regexp.MustCompile(`(?m)^bridge_generation (\d+)$`)

func generation(t *testing.T, c *http.Client, adminAddr string) int {
	t.Helper()
	resp, err := c.Get("http://" + adminAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	m := generationRE.FindSubmatch(b)
	if m == nil {
		t.Fatalf("no bridge_generation in /metrics")
	}
	n, _ := strconv.Atoi(string(m[1]))
	return n
}
