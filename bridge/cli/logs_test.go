package cli

import (
	"encoding/json"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"bridge/bridge/uwsgi"
)

// logApp writes hostile text to stderr both ways an app can: raw bytes to
// fd 2 and print() (which the shim turns into a JSON line), and answers with
// a cookie of its own.
const logApp = `import os

def application(environ, start_response):
    os.write(2, b"raw \x1b[31mred\rover\x00nul\xff\n")
    print("printed \x1b[31mred\x00nul")
    start_response("200 OK", [("Content-Type", "text/plain"), ("Set-Cookie", "resp=set-cookie-secret")])
    return [b"ok\n"]
`

// The log of a real request, through nginx's protocol and the Python
// runner, in both formats: one access line with all its fields, client and
// app text escaped, and no credentials from request or response headers.
func TestRequestLogHygiene(t *testing.T) {
	t.Setenv("BRIDGE_CACHE_DIR", t.TempDir())
	appDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(appDir, "logapp.py"), []byte(logApp), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, format := range []string{"json", "console"} {
		t.Run(format, func(t *testing.T) {
			logs := serveOneRequest(t, appDir, format)
			for _, secret := range []string{"cookie-secret", "auth-secret", "set-cookie-secret"} {
				if strings.Contains(logs, secret) {
					t.Errorf("log contains %q:\n%s", secret, logs)
				}
			}
			if !utf8.ValidString(logs) {
				t.Fatalf("invalid UTF-8 in log:\n%q", logs)
			}
			for i, r := range logs {
				if (r < 0x20 && r != '\n') || (r >= 0x7f && r < 0xa0) {
					t.Fatalf("raw %q at %d:\n%s", r, i, logs)
				}
			}
			for _, want := range []string{`raw \x1b[31mred\rover\x00nul`, `printed \x1b[31mred\x00nul`, `/p\x1b[31m\r\n\x00`} {
				if format == "json" {
					want = strings.NewReplacer(`\x1b`, `\u001b`, `\x00`, `\u0000`).Replace(want)
				}
				if !strings.Contains(logs, want) {
					t.Errorf("log lacks %s:\n%s", want, logs)
				}
			}
			access := ""
			for _, line := range strings.Split(logs, "\n") {
				if strings.Contains(line, "req-hygiene-1") && strings.Contains(line, "status") {
					access = line
				}
			}
			if format == "json" {
				var rec map[string]any
				if err := json.Unmarshal([]byte(access), &rec); err != nil {
					t.Fatalf("access line %q: %v", access, err)
				}
				if rec["message"] != "request" || rec["method"] != "GET" || rec["uri"] != "/p\x1b[31m\r\n\x00\ufffd?q=1" ||
					rec["status"] != 200.0 || rec["bytes"] != 3.0 || rec["duration_ms"] == nil ||
					rec["worker"] == "" || rec["worker"] == nil || rec["runner"] != "python:logapp:application" {
					t.Errorf("access line: %s", access)
				}
				return
			}
			for _, want := range []string{"INF request ", "method=GET", "status=200", "bytes=3", "duration_ms=", "req_id=req-hygiene-1", "worker=", "runner=python:logapp:application"} {
				if !strings.Contains(access, want) {
					t.Errorf("access line lacks %q: %s", want, access)
				}
			}
		})
	}
}

// serveOneRequest runs bridge serve on appDir, sends one uwsgi request that
// carries credentials and control characters, stops bridge and returns its
// log.
func serveOneRequest(t *testing.T, appDir, format string) string {
	sockDir, err := os.MkdirTemp("", "bridge")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(sockDir)
	sock := filepath.Join(sockDir, "s.sock")
	logs, stop := startServe(t, []string{"serve", "--runner", "python:logapp:application", "--chdir", appDir,
		"--uwsgi", "unix:" + sock, "--workers", "1", "--log-format", format, "--log-level", "debug"})
	defer stop()
	waitReady(t, logs)
	var vars []uwsgi.Var
	for _, kv := range [][2]string{
		{"REQUEST_METHOD", "GET"}, {"REQUEST_URI", "/p\x1b[31m\r\n\x00\xff?q=1"}, {"PATH_INFO", "/p"},
		{"QUERY_STRING", "q=1"}, {"SERVER_PROTOCOL", "HTTP/1.1"}, {"HTTP_HOST", "example.test"},
		{"HTTP_X_REQUEST_ID", "req-hygiene-1"}, {"HTTP_COOKIE", "session=cookie-secret"},
		{"HTTP_AUTHORIZATION", "Bearer auth-secret"},
	} {
		vars = append(vars, uwsgi.Var{Name: []byte(kv[0]), Value: []byte(kv[1])})
	}
	pkt, err := uwsgi.AppendPacket(nil, &uwsgi.Packet{Vars: vars})
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := c.Write(pkt); err != nil {
		t.Fatal(err)
	}
	resp, err := io.ReadAll(c)
	if err != nil || !strings.HasPrefix(string(resp), "HTTP/1.1 200") {
		t.Fatalf("response %q, %v\n%s", resp, err, logs)
	}
	// The app's stderr lines arrive through a pipe; wait for both.
	for deadline := time.Now().Add(5 * time.Second); strings.Count(logs.String(), "31mred") < 2 && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
	return logs.String()
}
