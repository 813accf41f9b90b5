package front_test

import (
	"bufio"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
)

// rawHTTP writes req on a new connection to the HTTP front and reads one
// response.
func rawHTTP(t *testing.T, s *stack, req string) (*http.Response, []byte) {
	t.Helper()
	c := dialFront(t, "tcp", strings.TrimPrefix(s.httpURL, "http://"))
	defer c.Close()
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

// H2: REMOTE_ADDR and REMOTE_PORT come from the peer; X-Forwarded-* and
// Forwarded only become HTTP_* vars and change neither the address nor the
// scheme (there is no trusted-proxy setting).
func TestHTTPRemoteAddrIgnoresForwardedHeaders(t *testing.T) {
	s := startStack(t, 0)
	c := dialFront(t, "tcp", strings.TrimPrefix(s.httpURL, "http://"))
	defer c.Close()
	io.WriteString(c, "GET /env HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 10.9.8.7\r\nX-Forwarded-Proto: https\r\n"+
		"Forwarded: for=10.1.1.1;proto=https\r\nX-Real-Ip: 10.2.2.2\r\nConnection: close\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	var d envDump
	if err := json.NewDecoder(resp.Body).Decode(&d); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	local := c.LocalAddr().(*net.TCPAddr)
	if d.Vars["REMOTE_ADDR"] != "127.0.0.1" || d.Vars["REMOTE_PORT"] != strconv.Itoa(local.Port) {
		t.Errorf("REMOTE_ADDR %q REMOTE_PORT %q, want 127.0.0.1 %d", d.Vars["REMOTE_ADDR"], d.Vars["REMOTE_PORT"], local.Port)
	}
	if d.Scheme != "http" || d.Vars["HTTPS"] != "" {
		t.Errorf("scheme %q HTTPS %q, want http and none", d.Scheme, d.Vars["HTTPS"])
	}
	for k, v := range map[string]string{"HTTP_X_FORWARDED_FOR": "10.9.8.7", "HTTP_X_FORWARDED_PROTO": "https", "HTTP_FORWARDED": "for=10.1.1.1;proto=https"} {
		if d.Vars[k] != v {
			t.Errorf("%s = %q, want %q", k, d.Vars[k], v)
		}
	}
}

// H20: OPTIONS * is answered by Go (200, Content-Length 0); the app never
// sees an asterisk-form target.
func TestHTTPOptionsAsterisk(t *testing.T) {
	s := startStack(t, 0)
	resp, body := rawHTTP(t, s, "OPTIONS * HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	if resp.StatusCode != 200 || resp.ContentLength != 0 || len(body) != 0 {
		t.Fatalf("OPTIONS *: %d CL %d body %q", resp.StatusCode, resp.ContentLength, body)
	}
	if ct := resp.Header.Get("Content-Type"); ct == "application/json" {
		t.Fatalf("the app answered OPTIONS * (Content-Type %q)", ct)
	}
}

// H22: header names in any case give the same HTTP_* var.
func TestHTTPHeaderNameCaseIrrelevant(t *testing.T) {
	s := startStack(t, 0)
	_, body := rawHTTP(t, s, "GET /env HTTP/1.1\r\nHost: x\r\nx-lower-case: a\r\nX-UPPER-CASE: b\r\nx-MiXeD-cAsE: c\r\nConnection: close\r\n\r\n")
	var d envDump
	if err := json.Unmarshal(body, &d); err != nil {
		t.Fatalf("%v: %q", err, body)
	}
	for k, v := range map[string]string{"HTTP_X_LOWER_CASE": "a", "HTTP_X_UPPER_CASE": "b", "HTTP_X_MIXED_CASE": "c"} {
		if d.Vars[k] != v {
			t.Errorf("%s = %q, want %q", k, d.Vars[k], v)
		}
	}
}

// H25: a request header block over 64 KiB gets 431 and never reaches the
// app; one just under it is served.
func TestHTTPHeaderBlockOverCapIs431(t *testing.T) {
	s := startStack(t, 0)
	big := strings.Repeat("a", 70<<10)
	resp, body := rawHTTP(t, s, "GET /env HTTP/1.1\r\nHost: x\r\nX-Big: "+big+"\r\nConnection: close\r\n\r\n")
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("status %d, want 431", resp.StatusCode)
	}
	if strings.Contains(string(body), `"vars"`) {
		t.Fatalf("the app was called: %q", body)
	}
	ok := strings.Repeat("a", 60<<10)
	resp, body = rawHTTP(t, s, "GET /env HTTP/1.1\r\nHost: x\r\nX-Big: "+ok+"\r\nConnection: close\r\n\r\n")
	var d envDump
	if resp.StatusCode != 200 || json.Unmarshal(body, &d) != nil || d.Vars["HTTP_X_BIG"] != ok {
		t.Fatalf("60 KiB header: status %d", resp.StatusCode)
	}
}

// G20: the trailers of a chunked request body are discarded: the app gets
// the body and no var from a trailer. (Response trailers cannot happen: the
// runner protocol has no field for them.)
func TestHTTPRequestTrailersDiscarded(t *testing.T) {
	s := startStack(t, 0)
	_, body := rawHTTP(t, s, "POST /env HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTrailer: X-Trailer\r\nConnection: close\r\n\r\n"+
		"3\r\nabc\r\n0\r\nX-Trailer: t\r\n\r\n")
	var d envDump
	if err := json.Unmarshal(body, &d); err != nil {
		t.Fatalf("%v: %q", err, body)
	}
	if d.ContentLength != 3 || d.Vars["CONTENT_LENGTH"] != "3" {
		t.Errorf("content length %d, CONTENT_LENGTH %q, want 3", d.ContentLength, d.Vars["CONTENT_LENGTH"])
	}
	for k, v := range d.Vars {
		if strings.Contains(k, "TRAILER") || v == "t" {
			t.Errorf("trailer reached the app: %s = %q", k, v)
		}
	}
}
