package front_test

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"bridge/bridge/uwsgi"
)

// rawUwsgi sends a GET for path (and query) to the uwsgi front and returns
// every byte bridge wrote until it closed the connection.
func rawUwsgi(t *testing.T, network, addr, path, query string) ([]byte, error) {
	t.Helper()
	p, _ := golden(t, "get_plain")
	setVar(p, "PATH_INFO", path)
	setVar(p, "QUERY_STRING", query)
	pkt, _ := uwsgi.AppendPacket(nil, p)
	c := dialFront(t, network, addr)
	defer c.Close()
	if _, err := c.Write(pkt); err != nil {
		t.Fatal(err)
	}
	return io.ReadAll(c)
}

// rawHTTPBytes sends a GET to the HTTP front and returns every byte of the answer
// (the request asks for the connection to close after it).
func rawHTTPBytes(t *testing.T, url, target string) []byte {
	t.Helper()
	c, err := net.DialTimeout("tcp", strings.TrimPrefix(url, "http://"), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", target)
	all, _ := io.ReadAll(c)
	return all
}

// G26 G11 H16 H17 U18: a runner that does not check its app (any exec: runner)
// sends a header value or a reason phrase with CR LF in it, or a header name
// that is not a token. No front passes it on, splits it into a Set-Cookie or
// "repairs" it (net/http would turn CR LF into spaces, and drop a bad name):
// the client gets bridge's generic 502, and the log says which header and
// what was wrong, without the value.
func TestBadResponseHeadRefusedByEveryFront(t *testing.T) {
	s := startStack(t, 0)
	check := func(t *testing.T, raw []byte) {
		t.Helper()
		resp, err := http.ReadResponse(bufio.NewReader(strings.NewReader(string(raw))), nil)
		if err != nil {
			t.Fatalf("%v: %q", err, raw)
		}
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusBadGateway || string(body) != "Bad Gateway\n" {
			t.Errorf("got %d %q, want 502 and the generic body", resp.StatusCode, body)
		}
		if _, ok := resp.Header["Set-Cookie"]; ok || strings.Contains(string(raw), "x=1") || strings.Contains(string(raw), "X-Bad") {
			t.Errorf("the runner's head leaked: %q", raw)
		}
	}
	for _, path := range []string{"/bad-header", "/bad-reason", "/bad-name"} {
		t.Run("uwsgi"+path, func(t *testing.T) {
			raw, err := rawUwsgi(t, "unix", s.uwsgiSock, path, "")
			if err != nil {
				t.Fatal(err)
			}
			check(t, raw)
		})
		t.Run("http"+path, func(t *testing.T) {
			check(t, rawHTTPBytes(t, s.httpURL, path))
		})
	}
	logs := s.logs.String()
	for _, want := range []string{
		`"header":"X-Bad","problem":"value has byte 0x0d at 1"`,
		`"problem":"reason phrase has byte 0x0d at 2"`,
		`"header":"Set-Cookie","problem":"name is not a token: byte 0x3a at 10"`,
		"runner sent an invalid response head",
	} {
		if strings.Count(logs, want) < 2 {
			t.Errorf("log lacks %s (once per front):\n%s", want, logs)
		}
	}
	if strings.Contains(logs, "x=1") {
		t.Errorf("a header value reached the log")
	}
	// A bad head is the app's doing, not a dead runner: the worker stays
	// in dispatch.
	resp, body := get(t, s.httpURL+"/hello")
	if resp.StatusCode != 200 || body != "hello world\n" {
		t.Errorf("after: %d %q", resp.StatusCode, body)
	}
}

// G26 G13 U20 U21: bridge holds an app's body to its Content-Length, on
// every front. Longer: the client gets exactly the declared bytes and a
// complete response (an app still sending is cancelled). Shorter: an abort,
// never a clean end. Both are logged.
func TestContentLengthMismatchEveryFront(t *testing.T) {
	s := startStack(t, 0)
	for _, query := range []string{"", "stream=1"} {
		t.Run("uwsgi long "+query, func(t *testing.T) {
			raw, err := rawUwsgi(t, "tcp", s.uwsgiTCP, "/long", query)
			if want := "HTTP/1.1 200 \r\nContent-Length: 5\r\n\r\nhello"; err != nil || string(raw) != want {
				t.Errorf("got %q, %v; want %q", raw, err, want)
			}
		})
		t.Run("http long "+query, func(t *testing.T) {
			resp, err := client.Get(s.httpURL + "/long?" + query)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			if err != nil || resp.StatusCode != 200 || resp.ContentLength != 5 || string(body) != "hello" {
				t.Errorf("got %d length %d %q, %v", resp.StatusCode, resp.ContentLength, body, err)
			}
		})
	}
	t.Run("uwsgi short", func(t *testing.T) {
		raw, err := rawUwsgi(t, "tcp", s.uwsgiTCP, "/short", "")
		if !errors.Is(err, syscall.ECONNRESET) {
			t.Errorf("read ended with %v after %q, want a reset", err, raw)
		}
	})
	t.Run("http short", func(t *testing.T) {
		resp, err := client.Get(s.httpURL + "/short")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if body, err := io.ReadAll(resp.Body); err == nil {
			t.Errorf("body %q read cleanly; want an error", body)
		}
	})
	logs := s.logs.String()
	if n := strings.Count(logs, "runner sent more body than its Content-Length; cut at the declared length"); n != 4 {
		t.Errorf("%d cut warnings, want 4:\n%s", n, logs)
	}
	if n := strings.Count(logs, "runner's body is shorter than its Content-Length; aborting the response"); n != 2 {
		t.Errorf("%d short warnings, want 2:\n%s", n, logs)
	}
}
