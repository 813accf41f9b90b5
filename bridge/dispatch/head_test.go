package dispatch

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"net/textproto"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"bridge/bridge/uwsgi"
	bridgev1 "bridge/proto/bridge/v1"
)

func hdrs(kv ...string) []*bridgev1.Header {
	var out []*bridgev1.Header
	for i := 0; i+1 < len(kv); i += 2 {
		out = append(out, &bridgev1.Header{Name: []byte(kv[i]), Value: []byte(kv[i+1])})
	}
	return out
}

func names(hs []*bridgev1.Header) []string {
	var out []string
	for _, h := range hs {
		out = append(out, string(h.Name)+": "+string(h.Value))
	}
	return out
}

// G26 G10 G11 G12 G13 H16 H17: the response head check every front relies on.
// Refused heads say which header and what, never the value.
func TestCheckHead(t *testing.T) {
	for _, tc := range []struct {
		name    string
		status  uint32
		reason  string
		headers []*bridgev1.Header
		problem string   // substring of the error; "" = accepted
		want    []string // headers kept, when accepted and something was dropped
		length  int64
		dropped []string
	}{
		{name: "hello", status: 200, headers: hdrs("Content-Type", "text/plain", "Content-Length", "12"), length: 12},
		{name: "no headers", status: 204, length: -1},
		{name: "999 and reason", status: 999, reason: "Custom Thing", length: -1},
		{name: "reason with tab and obs-text", status: 200, reason: "Ok\tcafé", length: -1},
		{name: "value with tab, space, obs-text", status: 200, headers: hdrs("X-A", "a\tb c\xe9\xff", "X-Empty", ""), length: -1},
		{name: "every tchar", status: 200, headers: hdrs("!#$%&'*+-.^_`|~09azAZ", "v"), length: -1},
		{name: "repeated names kept", status: 200, headers: hdrs("Set-Cookie", "a=1", "set-cookie", "b=2"), length: -1},
		{name: "zero length", status: 200, headers: hdrs("content-length", "0"), length: 0},
		{name: "max length", status: 200, headers: hdrs("Content-Length", "9223372036854775807"), length: 1<<63 - 1},

		{name: "1xx", status: 103, problem: "status 103"},
		{name: "zero status", status: 0, problem: "status 0"},
		{name: "status 1000", status: 1000, problem: "status 1000"},
		{name: "reason CR LF", status: 200, reason: "OK\r\nSet-Cookie: x=1", problem: "reason phrase has byte 0x0d at 2"},
		{name: "reason LF", status: 200, reason: "OK\nX: y", problem: "reason phrase has byte 0x0a"},
		{name: "reason NUL", status: 200, reason: "O\x00K", problem: "reason phrase has byte 0x00"},
		{name: "reason DEL", status: 200, reason: "O\x7fK", problem: "reason phrase has byte 0x7f"},
		{name: "reason ESC", status: 200, reason: "\x1b[31m", problem: "reason phrase has byte 0x1b"},
		{name: "value CR LF", status: 200, headers: hdrs("X-A", "a\r\nSet-Cookie: x=1"), problem: `"X-A": value has byte 0x0d at 1`},
		{name: "value bare LF", status: 200, headers: hdrs("X-A", "a\nb"), problem: "value has byte 0x0a"},
		{name: "value bare CR", status: 200, headers: hdrs("X-A", "a\rb"), problem: "value has byte 0x0d"},
		{name: "value NUL", status: 200, headers: hdrs("X-A", "a\x00b"), problem: "value has byte 0x00"},
		{name: "value VT", status: 200, headers: hdrs("X-A", "a\vb"), problem: "value has byte 0x0b"},
		{name: "value DEL", status: 200, headers: hdrs("X-A", "a\x7f"), problem: "value has byte 0x7f"},
		{name: "bad value after good ones", status: 200, headers: hdrs("Content-Type", "text/plain", "X-A", "\x01"), problem: `"X-A"`},
		{name: "empty name", status: 200, headers: hdrs("", "v"), problem: "empty header name"},
		{name: "name with colon", status: 200, headers: hdrs("Set-Cookie: x=1", "v"), problem: `"Set-Cookie": name is not a token: byte 0x3a at 10`},
		{name: "name with space", status: 200, headers: hdrs("X A", "v"), problem: "byte 0x20"},
		{name: "name with CR LF", status: 200, headers: hdrs("X\r\nSet-Cookie", "v"), problem: "byte 0x0d"},
		{name: "name with obs-text", status: 200, headers: hdrs("X-\xe9", "v"), problem: "byte 0xe9"},
		{name: "name with NUL", status: 200, headers: hdrs("X\x00", "v"), problem: "byte 0x00"},
		{name: "Status header", status: 200, headers: hdrs("status", "302 Found"), problem: "Status header"},
		{name: "length not digits", status: 200, headers: hdrs("Content-Length", "12a"), problem: "not a decimal length"},
		{name: "length signed", status: 200, headers: hdrs("Content-Length", "+12"), problem: "not a decimal length"},
		{name: "length negative", status: 200, headers: hdrs("Content-Length", "-1"), problem: "not a decimal length"},
		{name: "length with space", status: 200, headers: hdrs("Content-Length", " 12"), problem: "not a decimal length"},
		{name: "length list", status: 200, headers: hdrs("Content-Length", "12, 12"), problem: "not a decimal length"},
		{name: "length empty", status: 200, headers: hdrs("Content-Length", ""), problem: "not a decimal length"},
		{name: "length overflow", status: 200, headers: hdrs("Content-Length", "9223372036854775808"), problem: "not a decimal length"},
		{name: "lengths differ", status: 200, headers: hdrs("Content-Length", "12", "content-length", "13"), problem: "several different values"},
		{name: "lengths differ in spelling", status: 200, headers: hdrs("Content-Length", "12", "Content-Length", "012"), problem: "several different values"},

		{name: "hop-by-hop dropped", status: 200,
			headers: hdrs("Connection", "close", "X-Ok", "1", "keep-alive", "timeout=5", "Proxy-Connection", "x", "Transfer-Encoding", "chunked",
				"TE", "trailers", "Trailer", "X", "UPGRADE", "h2c", "Content-Length", "2"),
			want: []string{"X-Ok: 1", "Content-Length: 2"}, length: 2,
			dropped: []string{"hop-by-hop Connection", "hop-by-hop keep-alive", "hop-by-hop Proxy-Connection", "hop-by-hop Transfer-Encoding",
				"hop-by-hop TE", "hop-by-hop Trailer", "hop-by-hop UPGRADE"}},
		{name: "same length twice", status: 200, headers: hdrs("Content-Length", "2", "X-Ok", "1", "content-length", "2"),
			want: []string{"Content-Length: 2", "X-Ok: 1"}, length: 2, dropped: []string{"duplicate Content-Length content-length"}},
		{name: "hop-by-hop with a bad value is refused, not dropped", status: 200, headers: hdrs("Connection", "close\r\nX: 1"), problem: "value has byte 0x0d"},
		{name: "near misses are plain headers", status: 200, headers: hdrs("Connections", "1", "T", "1", "Upgrades", "1", "Content-Lengths", "x", "Statuss", "1"), length: -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var dropped []string
			out, length, err := checkHead(tc.status, tc.reason, tc.headers, func(name []byte, why string) {
				dropped = append(dropped, why+" "+string(name))
			})
			if tc.problem != "" {
				he, ok := err.(*HeadError)
				if !ok || !strings.Contains(err.Error(), tc.problem) {
					t.Fatalf("err %v, want a *HeadError with %q", err, tc.problem)
				}
				for _, h := range tc.headers {
					if len(h.Value) > 0 && strings.Contains(he.Error(), string(h.Value)) {
						t.Errorf("error %q holds the value %q", he.Error(), h.Value)
					}
				}
				if out != nil {
					t.Errorf("headers returned with an error")
				}
				return
			}
			if err != nil {
				t.Fatalf("refused: %v", err)
			}
			if length != tc.length {
				t.Errorf("length %d, want %d", length, tc.length)
			}
			want := names(tc.headers)
			if tc.want != nil {
				want = tc.want
			} else if len(tc.headers) > 0 && &out[0] != &tc.headers[0] {
				t.Errorf("headers copied although nothing was dropped")
			}
			if got := names(out); !reflect.DeepEqual(got, want) {
				t.Errorf("headers %q, want %q", got, want)
			}
			if !reflect.DeepEqual(dropped, tc.dropped) {
				t.Errorf("dropped %q, want %q", dropped, tc.dropped)
			}
		})
	}
}

var helloHead = hdrs("Content-Type", "text/plain; charset=utf-8", "Content-Length", "12", "X-Request-Id", "0123456789abcdef", "Set-Cookie", "session=abc; Path=/; HttpOnly")

// The hello path stays free: a valid head with nothing to drop allocates
// nothing.
func TestCheckHeadDoesNotAllocate(t *testing.T) {
	n := testing.AllocsPerRun(1000, func() {
		if _, _, err := checkHead(200, "OK", helloHead, func([]byte, string) { t.Fatal("dropped") }); err != nil {
			t.Fatal(err)
		}
	})
	if n != 0 {
		t.Errorf("%v allocations per valid head, want 0", n)
	}
}

func BenchmarkCheckHead(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		_, _, _ = checkHead(200, "OK", helloHead, nil)
	}
}

// encodeHeaders packs headers for FuzzResponseHead: per header a length
// byte and the name, a length byte and the value.
func encodeHeaders(kv ...string) []byte {
	var b []byte
	for _, s := range kv {
		b = append(b, byte(len(s)))
		b = append(b, s...)
	}
	return b
}

func decodeHeaders(b []byte) []*bridgev1.Header {
	var out []*bridgev1.Header
	next := func() []byte {
		n := int(b[0])
		b = b[1:]
		n = min(n, len(b))
		s := b[:n:n]
		b = b[n:]
		return s
	}
	for len(b) > 0 {
		name := next()
		var value []byte
		if len(b) > 0 {
			value = next()
		}
		out = append(out, &bridgev1.Header{Name: name, Value: value})
	}
	return out
}

// G26 G11 H16: whatever checkHead accepts, written as the uwsgi front
// writes it, reads back with net/http as exactly that status, reason and
// header list, and the head ends where it should: nothing can be injected.
// The seeds are in testdata/fuzz/FuzzResponseHead. Run it with
//
//	go test ./bridge/dispatch -run '^$' -fuzz FuzzResponseHead -fuzztime 60s -fuzzminimizetime 2s
//
// (with the default minimizing time, one long new input can hold every
// worker for a minute: the exec count then stands still).
func FuzzResponseHead(f *testing.F) {
	f.Add(uint32(200), "OK", encodeHeaders("Content-Type", "text/plain", "Content-Length", "12"))
	f.Add(uint32(200), "OK", encodeHeaders("X-A", "a\r\nSet-Cookie: x=1"))
	f.Fuzz(func(t *testing.T, status uint32, reason string, raw []byte) {
		in := decodeHeaders(raw)
		out, length, err := checkHead(status, reason, in, func([]byte, string) {})
		if err != nil {
			if _, ok := err.(*HeadError); !ok {
				t.Fatalf("error of type %T", err)
			}
			return
		}
		var uh []uwsgi.Header
		want := http.Header{}
		for _, h := range out {
			uh = append(uh, uwsgi.Header{Name: h.Name, Value: h.Value})
			k := textproto.CanonicalMIMEHeaderKey(string(h.Name))
			// Optional whitespace around a value is not part of it (RFC
			// 9110 5.5): net/http trims it.
			want[k] = append(want[k], strings.Trim(string(h.Value), " \t"))
		}
		const marker = "\x00end-of-head"
		wire := append(uwsgi.AppendResponseHead(nil, int(status), reason, uh), marker...)
		br := bufio.NewReader(bytes.NewReader(wire))
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("accepted head does not parse: %v\n%q", err, wire)
		}
		if resp.StatusCode != int(status) || resp.Status != strconv.Itoa(int(status))+" "+reason {
			t.Errorf("status %q, want %d %q", resp.Status, status, reason)
		}
		if !reflect.DeepEqual(resp.Header, want) {
			t.Errorf("headers %q, want %q\n%q", resp.Header, want, wire)
		}
		if rest, _ := io.ReadAll(br); string(rest) != marker {
			t.Errorf("after the head: %q, want the marker", rest)
		}
		if length >= 0 && status != 204 && status != 304 && resp.ContentLength != length {
			t.Errorf("net/http reads Content-Length %d, checkHead %d", resp.ContentLength, length)
		}
		for _, h := range out {
			if kindOf(h.Name) == hopByHop {
				t.Errorf("hop-by-hop %q kept", h.Name)
			}
		}
	})
}
