package front_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

func get(t *testing.T, url string) (*http.Response, string) {
	t.Helper()
	resp, err := client.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: read body: %v", url, err)
	}
	return resp, string(b)
}

type envDump struct {
	Vars          map[string]string `json:"vars"`
	ID            string            `json:"id"`
	Scheme        string            `json:"scheme"`
	ContentLength int64             `json:"content_length"`
}

func TestHTTPHello(t *testing.T) {
	s := startStack(t, 0)
	resp, body := get(t, s.httpURL+"/hello")
	if resp.StatusCode != 200 || body != "hello world\n" {
		t.Fatalf("got %d %q", resp.StatusCode, body)
	}
	// The access line is written just after the response; allow it a moment.
	for i := 0; i < 100 && !strings.Contains(s.logs.String(), `"message":"request"`); i++ {
		time.Sleep(10 * time.Millisecond)
	}
	if !strings.Contains(s.logs.String(), `"uri":"/hello","status":200`) {
		t.Errorf("no access log line for /hello")
	}
}

// H1 H3 H4 W4 W8: the canonical variables built from an HTTP request.
func TestHTTPVars(t *testing.T) {
	s := startStack(t, 0)
	req, _ := http.NewRequest("GET", s.httpURL+"/env?a=%20b&c", nil)
	req.Header.Add("X-Foo", "one")
	req.Header.Add("X-Foo", "two")
	req.Header.Add("Cookie", "a=1")
	req.Header.Add("Cookie", "b=2")
	req.Header["X_Sneaky"] = []string{"x"}
	req.Header.Set("X-Request-Id", "abc-123")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var d envDump
	if err := json.NewDecoder(resp.Body).Decode(&d); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	want := map[string]string{
		"REQUEST_METHOD": "GET", "SCRIPT_NAME": "", "PATH_INFO": "/env", "QUERY_STRING": "a=%20b&c",
		"REQUEST_URI": "/env?a=%20b&c", "SERVER_PROTOCOL": "HTTP/1.1", "SERVER_NAME": "127.0.0.1",
		"HTTP_X_FOO": "one, two", "HTTP_COOKIE": "a=1; b=2", "HTTP_X_REQUEST_ID": "abc-123", "REMOTE_ADDR": "127.0.0.1",
	}
	for k, v := range want {
		if got, ok := d.Vars[k]; !ok || got != v {
			t.Errorf("%s = %q (present %v), want %q", k, got, ok, v)
		}
	}
	for _, k := range []string{"HTTP_X_SNEAKY", "CONTENT_TYPE", "CONTENT_LENGTH", "HTTP_TRANSFER_ENCODING"} {
		if _, ok := d.Vars[k]; ok {
			t.Errorf("%s present, want absent", k)
		}
	}
	if d.ID != "abc-123" || d.Scheme != "http" {
		t.Errorf("id %q scheme %q", d.ID, d.Scheme)
	}
}

// W2 W4: PATH_INFO is decoded exactly once, bytes kept (UTF-8 bytes stay
// bytes; the shim decodes them as latin-1).
func TestHTTPPathDecodedOnce(t *testing.T) {
	s := startStack(t, 0)
	for raw, want := range map[string]string{
		"/env/bar%252cbaz": "/env/bar%2cbaz",
		"/env/caf%C3%A9":   "/env/caf\xc3\xa9",
	} {
		_, body := rawHTTP(t, s, "GET "+raw+" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
		var d envDump
		json.Unmarshal(body, &d)
		if d.Vars["PATH_INFO"] != want || d.Vars["REQUEST_URI"] != raw {
			t.Errorf("%s: PATH_INFO %q REQUEST_URI %q, want %q", raw, d.Vars["PATH_INFO"], d.Vars["REQUEST_URI"], want)
		}
	}
}

// H7: a chunked request body is buffered and gets a CONTENT_LENGTH.
func TestHTTPChunkedBodyBuffered(t *testing.T) {
	s := startStack(t, 0)
	body := strings.Repeat("x", 100_000)
	req, _ := http.NewRequest("POST", s.httpURL+"/env", io.NopCloser(strings.NewReader(body)))
	req.ContentLength = -1 // forces chunked
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var d envDump
	json.NewDecoder(resp.Body).Decode(&d)
	if d.Vars["CONTENT_LENGTH"] != "100000" || d.ContentLength != 100000 {
		t.Fatalf("CONTENT_LENGTH %q, head length %d", d.Vars["CONTENT_LENGTH"], d.ContentLength)
	}
}

func TestHTTPEchoLargeBody(t *testing.T) {
	s := startStack(t, 0)
	body := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
	resp, err := client.Post(s.httpURL+"/echo", "application/octet-stream", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !bytes.Equal(got, body) {
		t.Fatalf("status %d, %d bytes back (want %d)", resp.StatusCode, len(got), len(body))
	}
}

// G6 H6: over the limit → 413 before the app runs.
func TestHTTPBodyTooLarge(t *testing.T) {
	s := startStack(t, 0)
	resp, err := client.Post(s.httpURL+"/echo", "application/octet-stream", bytes.NewReader(make([]byte, 9<<20)))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 413 {
		t.Fatalf("status %d, want 413", resp.StatusCode)
	}
}

// W23 H11: chunks are flushed as they come.
func TestHTTPStreamingFirstChunkEarly(t *testing.T) {
	s := startStack(t, 0)
	start := time.Now()
	resp, err := client.Get(s.httpURL + "/stream?n=3&ms=700")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	line, err := bufio.NewReader(resp.Body).ReadString('\n')
	if err != nil || line != "chunk 0\n" {
		t.Fatalf("first line %q %v", line, err)
	}
	if d := time.Since(start); d > 600*time.Millisecond {
		t.Fatalf("first chunk after %v: buffered", d)
	}
	if resp.ContentLength != -1 || len(resp.TransferEncoding) == 0 {
		t.Fatalf("want chunked response, got CL %d TE %v", resp.ContentLength, resp.TransferEncoding)
	}
}

// G2: an app error before the head is a generic 500; details only in the log.
func TestHTTPErrorBeforeHead(t *testing.T) {
	s := startStack(t, 0)
	resp, body := get(t, s.httpURL+"/error-before")
	if resp.StatusCode != 500 || strings.Contains(body, "secret") || strings.Contains(body, "Traceback") {
		t.Fatalf("got %d %q", resp.StatusCode, body)
	}
	if !strings.Contains(s.logs.String(), "boom secret-detail") {
		t.Fatalf("app error not logged")
	}
}

// G3: an app error after the head cuts the connection.
func TestHTTPErrorAfterHeadAborts(t *testing.T) {
	s := startStack(t, 0)
	resp, err := client.Get(s.httpURL + "/error-after")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	_, err = io.ReadAll(resp.Body)
	if err == nil {
		t.Fatalf("body read cleanly; want an error (truncated chunked body)")
	}
}

// G15: the runner dies mid-request → 502, then it is replaced.
func TestHTTPRunnerCrash(t *testing.T) {
	s := startStack(t, 0)
	resp, body := get(t, s.httpURL+"/crash")
	if resp.StatusCode != 502 {
		t.Fatalf("got %d %q, want 502", resp.StatusCode, body)
	}
	deadline := time.Now().Add(15 * time.Second)
	ok := 0
	for ok < 10 && time.Now().Before(deadline) {
		resp, _ := get(t, s.httpURL+"/hello")
		if resp.StatusCode == 200 {
			ok++
		} else {
			time.Sleep(50 * time.Millisecond)
		}
	}
	if ok < 10 {
		t.Fatalf("service did not recover after a crash")
	}
	// The other worker serves at once; the restart may be logged later.
	for time.Now().Before(deadline) && !strings.Contains(s.logs.String(), "worker exited; restarting") {
		time.Sleep(20 * time.Millisecond)
	}
	if !strings.Contains(s.logs.String(), "worker exited; restarting") {
		t.Fatalf("restart not logged")
	}
}

// G16: past --timeout with no head → 504.
func TestHTTPTimeout(t *testing.T) {
	s := startStack(t, 300*time.Millisecond)
	resp, _ := get(t, s.httpURL+"/sleep?ms=5000")
	if resp.StatusCode != 504 {
		t.Fatalf("got %d, want 504", resp.StatusCode)
	}
	// The slot was reset and the worker still serves.
	resp, body := get(t, s.httpURL+"/hello")
	if resp.StatusCode != 200 || body != "hello world\n" {
		t.Fatalf("after timeout: %d %q", resp.StatusCode, body)
	}
}

// H8 H6: Expect: 100-continue gets "100 Continue" before the body is sent;
// a body over the limit gets 413 without it.
func TestHTTPExpectContinue(t *testing.T) {
	s := startStack(t, 0)
	addr := strings.TrimPrefix(s.httpURL, "http://")
	for _, tc := range []struct {
		length     int
		wantStatus string
		want100    bool
	}{
		{length: 11, wantStatus: "200", want100: true},
		{length: 9 << 20, wantStatus: "413", want100: false},
	} {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		fmt.Fprintf(c, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\nExpect: 100-continue\r\n\r\n", tc.length)
		br := bufio.NewReader(c)
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		got100 := strings.HasPrefix(line, "HTTP/1.1 100 ")
		if got100 != tc.want100 {
			t.Fatalf("length %d: first line %q", tc.length, line)
		}
		if got100 {
			br.ReadString('\n') // blank line after the interim response
			io.WriteString(c, "hello world")
			line, _ = br.ReadString('\n')
		}
		if !strings.HasPrefix(line, "HTTP/1.1 "+tc.wantStatus) {
			t.Errorf("length %d: status line %q, want %s", tc.length, line, tc.wantStatus)
		}
		c.Close()
	}
}

// H9 H14: HEAD gets the head only; HTTP/1.0 gets no chunked coding.
func TestHTTPHeadAndHTTP10(t *testing.T) {
	s := startStack(t, 0)
	addr := strings.TrimPrefix(s.httpURL, "http://")
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, "HEAD /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	all, _ := io.ReadAll(c)
	c.Close()
	if !strings.HasPrefix(string(all), "HTTP/1.1 200 OK\r\n") || !strings.Contains(string(all), "Content-Length: 12\r\n") || strings.HasSuffix(string(all), "hello world\n") {
		t.Errorf("HEAD: %q", all)
	}
	c, err = net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, "GET /stream?n=2 HTTP/1.0\r\n\r\n")
	all, _ = io.ReadAll(c)
	c.Close()
	if strings.Contains(strings.ToLower(string(all)), "transfer-encoding") || !strings.HasSuffix(string(all), "chunk 0\nchunk 1\n") {
		t.Errorf("HTTP/1.0 stream: %q", all)
	}
}
