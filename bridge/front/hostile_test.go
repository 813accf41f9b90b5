package front_test

// Attacks a client on the same host (or facing --http) can make, each as
// found by a probe against the real binary (issue 14): every one of these
// tests failed before bridge had deadlines and limits.

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"bridge/bridge/dispatch"
	"bridge/bridge/front"
	"bridge/bridge/uwsgi"
)

// hostileStack is a stack with 4 slots (2 workers x 2 threads), no
// request timeout (an attacker's hold must end by the limits alone) and
// the given limits tuned.
func hostileStack(t *testing.T, tune func(*front.Limits)) *stack {
	t.Helper()
	lim := front.DefaultLimits()
	lim.Timeout, lim.MaxBody = 0, 8<<20
	tune(&lim)
	return startStackLimits(t, lim, dispatch.NewPool(64, 5*time.Second), nil)
}

// uwsgiPacket is a minimal request as nginx would send it.
func uwsgiPacket(t *testing.T, method, uri string, contentLength int, extra ...string) []byte {
	t.Helper()
	path, query, _ := strings.Cut(uri, "?")
	p := &uwsgi.Packet{}
	for _, kv := range [][2]string{{"REQUEST_METHOD", method}, {"REQUEST_URI", uri}, {"PATH_INFO", path},
		{"QUERY_STRING", query}, {"SERVER_PROTOCOL", "HTTP/1.1"}, {"SERVER_NAME", "t"}, {"SERVER_PORT", "80"},
		{"CONTENT_LENGTH", strconv.Itoa(contentLength)}} {
		p.Vars = append(p.Vars, uwsgi.Var{Name: []byte(kv[0]), Value: []byte(kv[1])})
	}
	for i := 0; i+1 < len(extra); i += 2 {
		p.Vars = append(p.Vars, uwsgi.Var{Name: []byte(extra[i]), Value: []byte(extra[i+1])})
	}
	b, err := uwsgi.AppendPacket(nil, p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// front is how a test reaches one of the two fronts with raw bytes.
type frontUnderTest struct {
	name    string
	dial    func(t *testing.T, s *stack) net.Conn
	request func(t *testing.T, method, uri string, contentLength int, extra ...string) []byte
}

var bothFronts = []frontUnderTest{
	{"http", func(t *testing.T, s *stack) net.Conn {
		return dialFront(t, "tcp", strings.TrimPrefix(s.httpURL, "http://"))
	}, func(_ *testing.T, method, uri string, contentLength int, extra ...string) []byte {
		var b strings.Builder
		fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: t\r\n", method, uri)
		if contentLength > 0 {
			fmt.Fprintf(&b, "Content-Length: %d\r\n", contentLength)
		}
		for i := 0; i+1 < len(extra); i += 2 {
			fmt.Fprintf(&b, "%s: %s\r\n", strings.TrimPrefix(extra[i], "HTTP_"), extra[i+1])
		}
		b.WriteString("\r\n")
		return []byte(b.String())
	}},
	{"uwsgi", func(t *testing.T, s *stack) net.Conn {
		return dialFront(t, "unix", s.uwsgiSock)
	}, uwsgiPacket},
}

// send writes req on a new connection and leaves the connection to the
// test; it is closed when the test ends.
func (f frontUnderTest) send(t *testing.T, s *stack, req []byte) net.Conn {
	t.Helper()
	c := f.dial(t, s)
	t.Cleanup(func() { c.Close() })
	if _, err := c.Write(req); err != nil {
		t.Fatal(err)
	}
	return c
}

// roundTrip sends req on a new connection and reads the whole response;
// the connection is closed before it returns, so that it holds no place
// under --max-connections.
func (f frontUnderTest) roundTrip(t *testing.T, s *stack, req []byte) *http.Response {
	t.Helper()
	c := f.dial(t, s)
	defer c.Close()
	if _, err := c.Write(req); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("%s %.40q: %v", f.name, req, err)
	}
	io.Copy(io.Discard, resp.Body)
	return resp
}

// get sends one GET on a new connection and returns its status.
func (f frontUnderTest) get(t *testing.T, s *stack, uri string) int {
	t.Helper()
	return f.roundTrip(t, s, f.request(t, "GET", uri, 0)).StatusCode
}

// Slow readers: four clients take a big response and stop reading. They
// held every slot for as long as they kept the connection open (every
// other request got 503 after the queue timeout); now each is cut after
// the write timeout and its slot freed.
func TestSlowReadersAreCut(t *testing.T) {
	for _, f := range bothFronts {
		t.Run(f.name, func(t *testing.T) {
			s := hostileStack(t, func(l *front.Limits) { l.WriteTimeout = 300 * time.Millisecond })
			var readers []net.Conn
			for range 4 {
				c := f.send(t, s, f.request(t, "GET", "/big?mb=256", 0))
				// The head arrives; then the client reads nothing more.
				if _, err := bufio.NewReader(c).ReadString('\n'); err != nil {
					t.Fatal(err)
				}
				readers = append(readers, c)
			}
			if got := f.get(t, s, "/hello"); got != 200 {
				t.Fatalf("hello while 4 slow readers hold their responses: %d, want 200", got)
			}
			// Each slow reader's connection was cut: reading on finds the
			// end long before 256 MiB.
			waitLogCount(t, s, `"uri":"/big?mb=256"`, 4)
			for _, c := range readers {
				_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
				n, _ := io.Copy(io.Discard, c)
				if n >= 256<<20 {
					t.Fatalf("a slow reader got the whole response (%d bytes)", n)
				}
			}
			if n := strings.Count(s.logs.String(), `"aborted":true`); n != 4 {
				t.Fatalf("%d responses logged as cut, want 4", n)
			}
		})
	}
}

// Slow uploads: four clients announce a 1 MiB body and send one byte.
// Their bodies were streamed to the app, holding every slot; now a body is
// read before a slot is taken, and a stalled one ends with 408.
func TestSlowUploadsHoldNoSlot(t *testing.T) {
	for _, f := range bothFronts {
		t.Run(f.name, func(t *testing.T) {
			s := hostileStack(t, func(l *front.Limits) { l.BodyTimeout = 2 * time.Second })
			var uploads []net.Conn
			for range 4 {
				uploads = append(uploads, f.send(t, s, append(f.request(t, "POST", "/echo", 1<<20), 'x')))
			}
			time.Sleep(200 * time.Millisecond) // the uploads have started
			if got := f.get(t, s, "/hello"); got != 200 {
				t.Fatalf("hello while 4 uploads stall: %d, want 200", got)
			}
			for _, c := range uploads {
				resp, err := http.ReadResponse(bufio.NewReader(c), nil)
				if err != nil {
					t.Fatalf("stalled upload: %v", err)
				}
				if resp.StatusCode != http.StatusRequestTimeout {
					t.Fatalf("stalled upload: %d, want 408", resp.StatusCode)
				}
			}
			if n := s.counted.get(http.StatusRequestTimeout); n != 4 {
				t.Fatalf("metrics counted %d requests with 408, want 4", n)
			}
		})
	}
}

// A header flood: more header fields than --max-headers is 431 on both
// fronts, before any work per header; so is a head over --max-header-size.
func TestHeaderLimits(t *testing.T) {
	for _, f := range bothFronts {
		t.Run(f.name, func(t *testing.T) {
			s := hostileStack(t, func(l *front.Limits) { l.MaxHeaders = 20; l.MaxHeaderSize = 8 << 10 })
			status := func(extra ...string) int {
				return f.roundTrip(t, s, f.request(t, "GET", "/hello", 0, extra...)).StatusCode
			}
			headers := func(n, size int) []string {
				var kv []string
				for i := range n {
					kv = append(kv, fmt.Sprintf("HTTP_X_H%d", i), strings.Repeat("v", size))
				}
				return kv
			}
			if got := status(headers(15, 10)...); got != 200 {
				t.Fatalf("15 headers: %d, want 200", got)
			}
			if got := status(headers(21, 10)...); got != 431 {
				t.Fatalf("21 headers over a limit of 20: %d, want 431", got)
			}
			if got := status(headers(2, 6000)...); got != 431 {
				t.Fatalf("a 12 KiB head over a limit of 8 KiB: %d, want 431", got)
			}
			if n := s.counted.get(431); n != 2 {
				t.Fatalf("metrics counted %d requests with 431, want 2", n)
			}
			waitLog(t, s, `"status":431`)
		})
	}
}

// --max-connections: past the limit a client is answered 503 with
// Retry-After at once, in the front's protocol, and it is counted.
func TestMaxConnectionsAnswers503(t *testing.T) {
	for _, f := range bothFronts {
		t.Run(f.name, func(t *testing.T) {
			s := hostileStack(t, func(l *front.Limits) { l.MaxConns = 1 })
			holder := f.dial(t, s) // sends nothing: holds the only place
			defer holder.Close()
			time.Sleep(100 * time.Millisecond)
			resp := f.roundTrip(t, s, f.request(t, "GET", "/hello", 0))
			if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" {
				t.Fatalf("over the connection limit: %d %v, want 503 with Retry-After", resp.StatusCode, resp.Header)
			}
			holder.Close()
			deadline := time.Now().Add(10 * time.Second)
			for f.get(t, s, "/hello") != 200 {
				if time.Now().After(deadline) {
					t.Fatal("no 200 after the holder left")
				}
				time.Sleep(50 * time.Millisecond)
			}
			if s.counted.get(503) < 1 {
				t.Fatal("the 503 was not counted")
			}
		})
	}
}

// Requests net/http refuses before any handler runs (a malformed request
// line, a head over the size limit) are logged and counted too.
func TestHTTPEarlyRejectionsAreCounted(t *testing.T) {
	s := hostileStack(t, func(l *front.Limits) { l.MaxHeaderSize = 4 << 10 })
	addr := strings.TrimPrefix(s.httpURL, "http://")
	for _, tc := range []struct {
		raw  string
		want int
	}{
		{"GARBAGE\r\n\r\n", 400},
		{"GET /hello HTTP/1.1\r\nHost: t\r\nX-Big: " + strings.Repeat("b", 10<<10) + "\r\n\r\n", 431},
	} {
		c := dialFront(t, "tcp", addr)
		if _, err := c.Write([]byte(tc.raw)); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		c.Close()
		if err != nil || resp.StatusCode != tc.want {
			t.Fatalf("%.20q: %v %v, want %d", tc.raw, resp, err, tc.want)
		}
		if n := s.counted.get(tc.want); n != 1 {
			t.Fatalf("%.20q: counted %d times, want 1", tc.raw, n)
		}
		waitLog(t, s, fmt.Sprintf(`"status":%d`, tc.want))
	}
}

// A request with both Content-Length and Transfer-Encoding: RFC 9112 §6.1
// says the connection must be closed after the response.
func TestContentLengthAndChunkedCloses(t *testing.T) {
	s := hostileStack(t, func(*front.Limits) {})
	c := dialFront(t, "tcp", strings.TrimPrefix(s.httpURL, "http://"))
	defer c.Close()
	req := "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
	if _, err := c.Write([]byte(req)); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	if string(body) != "abc" || !resp.Close {
		t.Fatalf("got %q close=%v, want the chunked body echoed and Connection: close", body, resp.Close)
	}
	if _, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("connection still open after the response: %v", err)
	}
}

// A chunked body over --max-body-size is refused with 413 while it is
// read, not spooled whole; one under it reaches the app whole, with its
// length, also past what is held in memory.
func TestChunkedBodyLimit(t *testing.T) {
	s := hostileStack(t, func(l *front.Limits) { l.MaxBody = 3 << 20 })
	post := func(n int) (int, []byte) {
		body := strings.NewReader(strings.Repeat("z", n))
		req, _ := http.NewRequest("POST", s.httpURL+"/echo", io.MultiReader(body)) // no length: chunked
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	if code, b := post(2<<20 + 7); code != 200 || len(b) != 2<<20+7 {
		t.Fatalf("2 MiB chunked: %d, %d bytes back", code, len(b))
	}
	if code, _ := post(4 << 20); code != 413 {
		t.Fatalf("4 MiB chunked over a 3 MiB limit: %d, want 413", code)
	}
}

// waitLog waits until bridge's log holds want.
func waitLog(t *testing.T, s *stack, want string) {
	t.Helper()
	waitLogCount(t, s, want, 1)
}

// waitLogCount waits until bridge's log holds want n times or more.
func waitLogCount(t *testing.T, s *stack, want string, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for strings.Count(s.logs.String(), want) < n {
		if time.Now().After(deadline) {
			t.Fatalf("log never showed %s", want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
