package front_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"bridge/bridge/uwsgi"
)

// golden reads a packet nginx 1.22 really sent (bridge/uwsgi/testdata) and
// returns it with its body.
func golden(t testing.TB, name string) (*uwsgi.Packet, []byte) {
	t.Helper()
	raw, err := os.ReadFile("../uwsgi/testdata/" + name + ".uwsgi")
	if err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(bytes.NewReader(raw))
	p, err := uwsgi.ReadPacket(br)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(br)
	return p, body
}

func setVar(p *uwsgi.Packet, name, value string) {
	for i := range p.Vars {
		if string(p.Vars[i].Name) == name {
			p.Vars[i].Value = []byte(value)
			return
		}
	}
	p.Vars = append(p.Vars, uwsgi.Var{Name: []byte(name), Value: []byte(value)})
}

// roundTrip sends one packet and returns the raw response.
func roundTrip(t *testing.T, network, addr string, p *uwsgi.Packet, body []byte) (*http.Response, []byte, error) {
	t.Helper()
	pkt, err := uwsgi.AppendPacket(nil, p)
	if err != nil {
		t.Fatal(err)
	}
	c := dialFront(t, network, addr)
	defer c.Close()
	if _, err := c.Write(append(pkt, body...)); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return nil, nil, err
	}
	b, err := io.ReadAll(resp.Body)
	return resp, b, err
}

func envOf(t *testing.T, s *stack, p *uwsgi.Packet, body []byte) envDump {
	t.Helper()
	resp, b, err := roundTrip(t, "unix", s.uwsgiSock, p, body)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("env request: %v %v %s", err, resp, b)
	}
	var d envDump
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatal(err)
	}
	return d
}

// U4 U8 W6 W8: nginx 1.22's one-var-per-header-line is merged; empty
// CONTENT_* and HTTP_CONTENT_* are gone.
func TestUwsgiRepeatedHeadersMerged(t *testing.T) {
	s := startStack(t, 0)
	p, _ := golden(t, "repeated_headers")
	setVar(p, "PATH_INFO", "/env")
	d := envOf(t, s, p, nil)
	if d.Vars["HTTP_X_FOO"] != "a, b" || d.Vars["HTTP_COOKIE"] != "a=1; b=2" {
		t.Errorf("X-Foo %q Cookie %q", d.Vars["HTTP_X_FOO"], d.Vars["HTTP_COOKIE"])
	}
	for _, k := range []string{"CONTENT_TYPE", "CONTENT_LENGTH", "HTTP_CONTENT_TYPE", "HTTP_CONTENT_LENGTH"} {
		if _, ok := d.Vars[k]; ok {
			t.Errorf("%s present", k)
		}
	}
	for _, k := range []string{"SCRIPT_NAME", "QUERY_STRING", "SERVER_NAME", "SERVER_PORT", "SERVER_PROTOCOL"} {
		if _, ok := d.Vars[k]; !ok {
			t.Errorf("%s missing", k)
		}
	}
}

// U9 U10: a chunked client body arrives de-chunked with CONTENT_LENGTH, and
// HTTP_TRANSFER_ENCODING is dropped.
func TestUwsgiChunkedPost(t *testing.T) {
	s := startStack(t, 0)
	p, body := golden(t, "post_chunked")
	setVar(p, "PATH_INFO", "/env")
	d := envOf(t, s, p, body)
	if _, ok := d.Vars["HTTP_TRANSFER_ENCODING"]; ok {
		t.Errorf("HTTP_TRANSFER_ENCODING forwarded")
	}
	if d.ContentLength != int64(len(body)) || d.Vars["CONTENT_LENGTH"] == "" {
		t.Errorf("content length %d / %q, body %d", d.ContentLength, d.Vars["CONTENT_LENGTH"], len(body))
	}
	setVar(p, "PATH_INFO", "/echo")
	resp, got, err := roundTrip(t, "unix", s.uwsgiSock, p, body)
	if err != nil || resp.StatusCode != 200 || !bytes.Equal(got, body) {
		t.Fatalf("echo: %v %v %q", err, resp, got)
	}
}

// U13 U14 U16: SCRIPT_NAME is stripped from PATH_INFO; UWSGI_* magic vars
// never reach the app; UWSGI_SCHEME picks the scheme.
func TestUwsgiScriptNameSchemeMagicVars(t *testing.T) {
	s := startStack(t, 0)
	p, _ := golden(t, "get_query")
	setVar(p, "SCRIPT_NAME", "/app/")
	setVar(p, "PATH_INFO", "/app/env")
	setVar(p, "UWSGI_FILE", "/tmp/evil.py")
	setVar(p, "UWSGI_SCHEME", "https")
	setVar(p, "REQUEST_SCHEME", "")
	d := envOf(t, s, p, nil)
	if d.Vars["SCRIPT_NAME"] != "/app" || d.Vars["PATH_INFO"] != "/env" {
		t.Errorf("SCRIPT_NAME %q PATH_INFO %q", d.Vars["SCRIPT_NAME"], d.Vars["PATH_INFO"])
	}
	for k := range d.Vars {
		if strings.HasPrefix(k, "UWSGI_") {
			t.Errorf("%s reached the app", k)
		}
	}
	if d.Scheme != "https" {
		t.Errorf("scheme %q", d.Scheme)
	}
}

// U18: status line, headers, raw body, then the connection closes.
func TestUwsgiResponseFraming(t *testing.T) {
	s := startStack(t, 0)
	p, _ := golden(t, "get_plain")
	setVar(p, "PATH_INFO", "/hello")
	pkt, _ := uwsgi.AppendPacket(nil, p)
	c := dialFront(t, "tcp", s.uwsgiTCP)
	defer c.Close()
	c.Write(pkt)
	all, err := io.ReadAll(c) // returns only when bridge closes
	if err != nil {
		t.Fatal(err)
	}
	want := "HTTP/1.1 200 \r\nContent-Type: text/plain\r\nContent-Length: 12\r\n\r\nhello world\n"
	if string(all) != want {
		t.Fatalf("got %q\nwant %q", all, want)
	}
}

// W23: a streamed response arrives whole and in order, however its chunks
// were coalesced on the way (dispatch's coalescer), and it still ends in a
// clean close.
func TestUwsgiStreamedChunksInOrder(t *testing.T) {
	s := startStack(t, 0)
	p, _ := golden(t, "get_plain")
	setVar(p, "PATH_INFO", "/stream")
	setVar(p, "QUERY_STRING", "n=2000")
	resp, body, err := roundTrip(t, "unix", s.uwsgiSock, p, nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("%v %v", err, resp)
	}
	var want strings.Builder
	for i := 0; i < 2000; i++ {
		fmt.Fprintf(&want, "chunk %d\n", i)
	}
	if string(body) != want.String() {
		t.Fatalf("body of %d bytes differs from the %d bytes sent", len(body), want.Len())
	}
}

// Connections are served at once however many arrive together: the
// goroutine that accepts one serves it, and another takes over Accept.
func TestUwsgiServesConnectionsConcurrently(t *testing.T) {
	s := startStack(t, 0)
	p, _ := golden(t, "get_plain")
	setVar(p, "PATH_INFO", "/sleep")
	setVar(p, "QUERY_STRING", "ms=300")
	start := time.Now()
	errs := make(chan error, 40)
	for i := 0; i < 40; i++ {
		go func() {
			resp, body, err := roundTrip(t, "unix", s.uwsgiSock, p, nil)
			if err == nil && (resp.StatusCode != 200 || string(body) != "slept") {
				err = fmt.Errorf("%d %q", resp.StatusCode, body)
			}
			errs <- err
		}()
	}
	for i := 0; i < 40; i++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	// The stack's workers and slots, not Accept, bound the concurrency.
	if d := time.Since(start); d > 20*300*time.Millisecond {
		t.Fatalf("40 requests of 300 ms took %v", d)
	}
}

// U24: nginx closing the connection mid-request (its client left) cancels
// the request once it has run watchDelay, and the app sees the cancel.
func TestUwsgiDisconnectCancels(t *testing.T) {
	s := startStack(t, 0)
	p, _ := golden(t, "get_plain")
	setVar(p, "PATH_INFO", "/sleep")
	setVar(p, "QUERY_STRING", "ms=5000")
	pkt, _ := uwsgi.AppendPacket(nil, p)
	for i := 0; i < 3; i++ {
		c := dialFront(t, "unix", s.uwsgiSock)
		c.Write(pkt)
		time.Sleep(100 * time.Millisecond)
		gone := time.Now()
		c.Close()
		for strings.Count(s.logs.String(), `"status":499`) <= i {
			if time.Since(gone) > 2*time.Second {
				t.Fatalf("request %d not cancelled 2 s after nginx closed its connection:\n%s", i, s.logs.String())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// U2 U17: malformed packets get 400, unknown modifier1 gets 500, and the app
// is not called.
func TestUwsgiBadPackets(t *testing.T) {
	s := startStack(t, 0)
	c := dialFront(t, "unix", s.uwsgiSock)
	c.Write([]byte{0, 10, 0, 0, 5, 0, 'A'}) // datasize 10, entry cut short
	c.(*net.UnixConn).CloseWrite()
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	c.Close()
	if err != nil || resp.StatusCode != 400 {
		t.Fatalf("malformed: %v %v", resp, err)
	}
	p, _ := golden(t, "get_plain")
	setVar(p, "PATH_INFO", "/hello")
	// Every application modifier1 of the language table (WSGI 0, PSGI 5,
	// Rack 7) reaches the one runner; others, such as uWSGI's 1 (its
	// internal routing), get 500.
	for m, want := range map[uint8]int{0: 200, 5: 200, 7: 200, 1: 500, 99: 500} {
		p.Modifier1 = m
		resp, _, err = roundTrip(t, "unix", s.uwsgiSock, p, nil)
		if err != nil || resp.StatusCode != want {
			t.Fatalf("modifier1 %d: %v %v, want %d", m, resp, err, want)
		}
	}
}

// U20 G3: an abort after the head is an RST on TCP, never a clean end.
func TestUwsgiAbortIsReset(t *testing.T) {
	s := startStack(t, 0)
	p, _ := golden(t, "get_plain")
	setVar(p, "PATH_INFO", "/error-after")
	pkt, _ := uwsgi.AppendPacket(nil, p)
	c := dialFront(t, "tcp", s.uwsgiTCP)
	defer c.Close()
	c.Write(pkt)
	_, err := io.ReadAll(c)
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("read ended with %v, want connection reset", err)
	}
}

// G2 U18: an error before the head is a generic 500 from bridge.
func TestUwsgiErrorBeforeHead(t *testing.T) {
	s := startStack(t, 0)
	p, _ := golden(t, "get_plain")
	setVar(p, "PATH_INFO", "/error-before")
	resp, body, err := roundTrip(t, "unix", s.uwsgiSock, p, nil)
	if err != nil || resp.StatusCode != 500 || string(body) != "Internal Server Error\n" {
		t.Fatalf("%v %v %q", err, resp, body)
	}
}

// G12 H13 G26: hop-by-hop headers from a runner never reach the wire
// (dropped in dispatch, for both fronts).
func TestHopByHopHeadersDropped(t *testing.T) {
	s := startStack(t, 0)
	p, _ := golden(t, "get_plain")
	setVar(p, "PATH_INFO", "/hop")
	pkt, _ := uwsgi.AppendPacket(nil, p)
	c := dialFront(t, "unix", s.uwsgiSock)
	defer c.Close()
	c.Write(pkt)
	all, _ := io.ReadAll(c)
	if want := "HTTP/1.1 200 \r\nX-Ok: 1\r\nContent-Length: 2\r\n\r\nok"; string(all) != want {
		t.Errorf("uwsgi: got %q, want %q", all, want)
	}
	resp, body := get(t, s.httpURL+"/hop")
	if resp.Header.Get("X-Ok") != "1" || resp.Header.Get("Connection") != "" || len(resp.TransferEncoding) != 0 || body != "ok" {
		t.Errorf("http: headers %v TE %v body %q", resp.Header, resp.TransferEncoding, body)
	}
	if !strings.Contains(s.logs.String(), "dropped hop-by-hop") {
		t.Errorf("no warning logged")
	}
}

// H12 G21: lower-case framing headers (Rack 3) are the app's, not doubled
// by net/http: one Content-Length, no chunking, no sniffed Content-Type.
func TestLowerCaseFramingHeaders(t *testing.T) {
	s := startStack(t, 0)
	resp, body := get(t, s.httpURL+"/lower")
	if got := resp.Header.Values("Content-Type"); len(got) != 1 || got[0] != "text/x-kit" {
		t.Errorf("Content-Type %q, want the app's one", got)
	}
	if resp.ContentLength != 2 || len(resp.TransferEncoding) != 0 || body != "ok" || resp.Header.Get("X-Ok") != "1" {
		t.Errorf("length %d TE %v body %q headers %v", resp.ContentLength, resp.TransferEncoding, body, resp.Header)
	}
}
