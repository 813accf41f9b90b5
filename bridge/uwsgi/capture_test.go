package uwsgi

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"
)

// The golden packets under testdata/ are regenerated with
//
//	go test ./bridge/uwsgi/ -run TestCapture -capture
//
// as root, the way the e2e fixtures run nginx. It starts the system nginx
// (single process, so the one PID we started is all there is to stop) on a
// private prefix and a free 127.0.0.1 port, with Debian's stock
// uwsgi_params, and records what nginx sends upstream byte for byte.
// SERVER_PORT and REMOTE_PORT change on every capture; tests do not pin them.
var capture = flag.Bool("capture", false, "regenerate testdata/*.uwsgi from a real nginx (needs root and /usr/sbin/nginx)")

const nginxBin = "/usr/sbin/nginx"

// captureCase is one client request sent through nginx. The request is raw
// bytes so header order, repeats and framing are exactly what the case says;
// net/http would sort and merge them.
type captureCase struct {
	name string
	req  string // "@HOST@" is replaced by 127.0.0.1:port
}

func captureCases() []captureCase {
	long := strings.Repeat("0123456789abcdef", 500) // 8000 bytes, fits nginx's default 8k header buffer
	return []captureCase{
		{"get_query", "GET /search?q=go+lang&page=2 HTTP/1.1\r\nHost: @HOST@\r\nUser-Agent: capture/1\r\nAccept: */*\r\nConnection: close\r\n\r\n"},
		{"get_plain", "GET / HTTP/1.1\r\nHost: @HOST@\r\nConnection: close\r\n\r\n"},
		{"post_form", "POST /form HTTP/1.1\r\nHost: @HOST@\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 22\r\nConnection: close\r\n\r\nname=caf%C3%A9&x=1&y=2"},
		{"post_chunked", "POST /upload HTTP/1.1\r\nHost: @HOST@\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"},
		{"repeated_headers", "GET /rep HTTP/1.1\r\nHost: @HOST@\r\nX-Foo: a\r\nCookie: a=1\r\nX_Under: dropped\r\nX-Foo: b\r\nCookie: b=2\r\nConnection: close\r\n\r\n"},
		{"long_header", "GET /long HTTP/1.1\r\nHost: @HOST@\r\nX-Long: " + long + "\r\nConnection: close\r\n\r\n"},
		{"percent_path", "GET /caf%C3%A9?x=%2F HTTP/1.1\r\nHost: @HOST@\r\nConnection: close\r\n\r\n"},
		{"head", "HEAD /head?x=1 HTTP/1.1\r\nHost: @HOST@\r\nConnection: close\r\n\r\n"},
		{"normalize", "GET //a/./b/../c%2Fd HTTP/1.1\r\nHost: @HOST@\r\nConnection: close\r\n\r\n"},
		{"modifiers", "GET /mod/x HTTP/1.1\r\nHost: @HOST@\r\nConnection: close\r\n\r\n"},
		{"expect_continue", "PUT /put HTTP/1.1\r\nHost: @HOST@\r\nContent-Length: 4\r\nExpect: 100-continue\r\nConnection: close\r\n\r\ndata"},
		{"http10_nohost", "GET /old HTTP/1.0\r\n\r\n"},
	}
}

const nginxConf = `daemon off;
master_process off;
worker_processes 1;
pid @DIR@/nginx.pid;
error_log @DIR@/error.log info;
events { worker_connections 64; }
http {
    access_log off;
    client_body_temp_path @DIR@/client_body;
    proxy_temp_path       @DIR@/proxy;
    uwsgi_temp_path       @DIR@/uwsgi;
    fastcgi_temp_path     @DIR@/fastcgi;
    scgi_temp_path        @DIR@/scgi;
    server {
        listen 127.0.0.1:@PORT@;
        server_name 127.0.0.1;
        root /srv/bridge-capture;
        location / {
            include /etc/nginx/uwsgi_params;
            uwsgi_pass 127.0.0.1:@UPSTREAM@;
        }
        location /mod/ {
            include /etc/nginx/uwsgi_params;
            uwsgi_modifier1 5;
            uwsgi_modifier2 9;
            uwsgi_pass 127.0.0.1:@UPSTREAM@;
        }
    }
}
`

func TestCapture(t *testing.T) {
	if !*capture {
		t.Skip("golden capture runs only with -capture")
	}
	if os.Geteuid() != 0 {
		t.Fatal("-capture needs root")
	}
	if _, err := os.Stat(nginxBin); err != nil {
		t.Fatalf("-capture needs %s: %v", nginxBin, err)
	}
	dir := t.TempDir()

	upstream, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer upstream.Close()
	port := freePort(t)
	conf := strings.NewReplacer("@DIR@", dir, "@PORT@", strconv.Itoa(port),
		"@UPSTREAM@", strconv.Itoa(upstream.Addr().(*net.TCPAddr).Port)).Replace(nginxConf)
	confPath := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(nginxBin, "-p", dir, "-c", confPath, "-e", filepath.Join(dir, "error.log"))
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Stop exactly the process we started; master_process off means there
	// are no workers to chase.
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGQUIT)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			if b, err := os.ReadFile(filepath.Join(dir, "error.log")); err == nil {
				t.Logf("nginx error.log:\n%s", b)
			}
		}
	}()
	addr := "127.0.0.1:" + strconv.Itoa(port)
	waitListening(t, addr)

	for _, c := range captureCases() {
		raw, err := captureOne(upstream.(*net.TCPListener), addr, strings.ReplaceAll(c.req, "@HOST@", addr))
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		g, err := goldenFromRaw(raw)
		if err != nil {
			t.Fatalf("%s: captured packet does not parse: %v", c.name, err)
		}
		js, err := json.MarshalIndent(g, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		base := filepath.Join("testdata", c.name)
		if err := os.WriteFile(base+".uwsgi", raw, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(base+".json", append(js, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: %d bytes, %d vars, body %d bytes", c.name, len(raw), len(g.Vars), len(g.Body))
	}
}

// captureOne sends req to nginx and returns everything nginx wrote on the
// upstream connection. The upstream side reads until nginx has been silent
// for a moment instead of parsing, so the capture does not depend on the
// codec it is meant to test; nginx buffers request bodies by default, so the
// whole packet arrives in one burst.
func captureOne(upstream *net.TCPListener, addr, req string) ([]byte, error) {
	client, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	defer client.Close()
	_ = client.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(client, req); err != nil {
		return nil, err
	}

	_ = upstream.SetDeadline(time.Now().Add(5 * time.Second))
	conn, err := upstream.Accept()
	if err != nil {
		return nil, fmt.Errorf("nginx did not connect upstream: %w", err)
	}
	defer conn.Close()
	var raw bytes.Buffer
	buf := make([]byte, 64<<10)
	for {
		_ = conn.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		n, err := conn.Read(buf)
		raw.Write(buf[:n])
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() && raw.Len() > 0 {
				break
			}
			return nil, fmt.Errorf("reading upstream after %d bytes: %w", raw.Len(), err)
		}
	}
	resp := AppendResponseHead(nil, 200, "OK", []Header{
		{Name: []byte("Content-Type"), Value: []byte("text/plain")},
		{Name: []byte("Content-Length"), Value: []byte("2")},
	})
	if _, err := conn.Write(append(resp, "ok"...)); err != nil {
		return nil, err
	}
	conn.Close()

	got, err := io.ReadAll(client)
	if err != nil {
		return nil, fmt.Errorf("reading client response: %w", err)
	}
	if !bytes.Contains(got, []byte(" 200 OK\r\n")) {
		return nil, fmt.Errorf("client got %q", got)
	}
	return raw.Bytes(), nil
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func waitListening(t *testing.T, addr string) {
	t.Helper()
	for i := 0; i < 100; i++ {
		c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond)
		if err == nil {
			c.Close()
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("nginx did not listen on %s", addr)
}

// golden is the expectation stored beside each .uwsgi file. Strings that are
// not valid UTF-8 are stored hex-encoded with Hex set, because encoding/json
// would silently replace the bytes.
type golden struct {
	Modifier1 uint8       `json:"modifier1"`
	Modifier2 uint8       `json:"modifier2"`
	Vars      []goldenVar `json:"vars"`
	Body      string      `json:"body"`
}

type goldenVar struct {
	Name  string `json:"name"`
	Value string `json:"value"`
	Hex   bool   `json:"hex,omitempty"`
}

func goldenFromRaw(raw []byte) (*golden, error) {
	br := bufio.NewReader(bytes.NewReader(raw))
	p, err := ReadPacket(br)
	if err != nil {
		return nil, err
	}
	body, err := io.ReadAll(br)
	if err != nil {
		return nil, err
	}
	g := &golden{Modifier1: p.Modifier1, Modifier2: p.Modifier2, Body: string(body), Vars: []goldenVar{}}
	for _, v := range p.Vars {
		gv := goldenVar{Name: string(v.Name), Value: string(v.Value)}
		if !utf8.Valid(v.Name) || !utf8.Valid(v.Value) {
			gv = goldenVar{Name: hex.EncodeToString(v.Name), Value: hex.EncodeToString(v.Value), Hex: true}
		}
		g.Vars = append(g.Vars, gv)
	}
	return g, nil
}

// decode turns a stored expectation back into vars.
func (g *golden) decode() ([]Var, error) {
	vars := make([]Var, 0, len(g.Vars))
	for _, gv := range g.Vars {
		v := Var{Name: []byte(gv.Name), Value: []byte(gv.Value)}
		if gv.Hex {
			var err error
			if v.Name, err = hex.DecodeString(gv.Name); err != nil {
				return nil, err
			}
			if v.Value, err = hex.DecodeString(gv.Value); err != nil {
				return nil, err
			}
		}
		vars = append(vars, v)
	}
	return vars, nil
}
