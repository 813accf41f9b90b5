package e2e

import (
	"bytes"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// testWrite covers W24: write() data goes out before the iterable's, an
// empty write is harmless, and close() runs once (W26).
func testWrite(t *testing.T, fx *fixture) {
	forFronts(t, fx.fronts, nil, func(t *testing.T, f front) {
		tok := newID(t, "tok")
		get(t, f, "/write?token="+tok).expect(t, 200, "w1-w2-i1-i2")
		fx.expectClosedOnce(t, tok)
	})
}

// testStream covers W22 (empty chunks never end the body or send a head
// early) and W23 (each chunk is flushed at once: chunk 0 arrives well
// before the generator finishes), and W26 after a normal end.
func testStream(t *testing.T, fx *fixture) {
	forFronts(t, fx.fronts, nil, func(t *testing.T, f front) {
		tok := newID(t, "tok")
		req := newRequest(t, f, http.MethodGet, "/stream?n=3&delay=1&token="+tok, nil, nil)
		start := time.Now()
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		lines, at, err := timedLines(resp.Body, start)
		if err != nil {
			t.Fatalf("body: %v (lines so far %q)", err, lines)
		}
		if want := []string{"chunk0\n", "chunk1\n", "chunk2\n"}; strings.Join(lines, "") != strings.Join(want, "") {
			t.Fatalf("body lines %q, want %q (W22)", lines, want)
		}
		if resp.StatusCode != 200 || resp.Header.Get("X-Chunks") != "3" {
			t.Errorf("status %d, X-Chunks %q", resp.StatusCode, resp.Header.Get("X-Chunks"))
		}
		if f.unbuffered {
			// The generator sleeps 1 s between chunks: 2 s in all.
			if at[0] > 800*time.Millisecond {
				t.Errorf("chunk 0 arrived after %v, want < 0.8s: not flushed (W23)", at[0])
			}
			if at[2] < 1800*time.Millisecond || at[1]-at[0] < 700*time.Millisecond {
				t.Errorf("chunks arrived at %v, want about 0s, 1s, 2s (W23)", at)
			}
		}
		fx.expectClosedOnce(t, tok)
	})
}

// testChangeOfMind covers W21 and W20: the app yields an empty chunk (so the head is
// not sent), then calls start_response again with exc_info; the client gets
// the second status, headers and body. Through uwsgi the reason "Oops"
// survives (U18); through Go's HTTP server it becomes the standard text.
func testChangeOfMind(t *testing.T, fx *fixture) {
	forFronts(t, fx.fronts, nil, func(t *testing.T, f front) {
		tok := newID(t, "tok")
		r := get(t, f, "/change_of_mind?token="+tok)
		r.expect(t, 500, "err")
		want := "500 Internal Server Error"
		if f.uwsgi {
			want = "500 Oops"
		}
		if r.statusLine != want {
			t.Errorf("status line %q, want %q (U18, H18)", r.statusLine, want)
		}
		if r.header.Get("X-Second") != "yes" || r.header.Get("X-First") != "" {
			t.Errorf("X-First %q, X-Second %q: want the replaced headers only (W20)",
				r.header.Get("X-First"), r.header.Get("X-Second"))
		}
		fx.expectClosedOnce(t, tok)
	})
}

// testContentLength covers W28, G13 and U21: bytes past the app's
// Content-Length are never sent and iteration stops; fewer bytes than
// declared abort the response instead of ending it cleanly.
func testContentLength(t *testing.T, fx *fixture) {
	t.Run("overrun", func(t *testing.T) {
		t.Parallel()
		forFronts(t, fx.fronts, nil, func(t *testing.T, f front) {
			tok := newID(t, "tok")
			r := get(t, f, "/content_length?mode=over&token="+tok)
			r.expect(t, 200, "hello")
			if r.header.Get("Content-Length") != "5" {
				t.Errorf("Content-Length %q, want 5", r.header.Get("Content-Length"))
			}
			fx.expectClosedOnce(t, tok)
			if n := fx.closeCount(t, "overiter", tok); n != 0 {
				t.Errorf("the generator was resumed after the Content-Length was reached (W28)")
			}
			if _, ok := fx.bridge.log.waitRecord(5*time.Second, func(l logRecord) bool {
				return l.reqID() == r.reqID && strings.Contains(l.raw, "Content-Length") && l.str("level") == "warn"
			}); !ok {
				t.Errorf("no warning about the overrun logged for request %s (W28)", r.reqID)
			}
		})
	})
	t.Run("short", func(t *testing.T) {
		t.Parallel()
		forFronts(t, fx.fronts, nil, func(t *testing.T, f front) {
			tok := newID(t, "tok")
			r := request(t, f, http.MethodGet, "/content_length?mode=under&token="+tok, nil, nil)
			if r.status != 200 || r.bodyErr == nil || string(r.body) != "short" {
				t.Errorf("got %d %q, body error %v; want 200, %q and a broken body (G13, U20)",
					r.status, r.body, r.bodyErr, "short")
			}
			fx.expectClosedOnce(t, tok)
		})
	})
}

// testHead covers W30, H14 and G14: HEAD runs the app with
// REQUEST_METHOD=HEAD, sends no body, keeps the app's Content-Length and
// still calls close().
func testHead(t *testing.T, fx *fixture) {
	forFronts(t, fx.fronts, nil, func(t *testing.T, f front) {
		tok := newID(t, "tok")
		r := request(t, f, http.MethodHead, "/head?token="+tok, nil, nil)
		r.expect(t, 200, "")
		if r.header.Get("Content-Length") != "10" || r.header.Get("X-Method") != "HEAD" {
			t.Errorf("Content-Length %q, X-Method %q; want 10, HEAD (W30)",
				r.header.Get("Content-Length"), r.header.Get("X-Method"))
		}
		fx.expectClosedOnce(t, tok)

		tok = newID(t, "tok")
		r = get(t, f, "/head?token="+tok)
		r.expect(t, 200, "hello head")
		if r.header.Get("X-Method") != "GET" {
			t.Errorf("X-Method %q, want GET", r.header.Get("X-Method"))
		}
		fx.expectClosedOnce(t, tok)

		// A generator without Content-Length: the shim may stop early,
		// and must still close.
		tok = newID(t, "tok")
		r = request(t, f, http.MethodHead, "/stream?n=3&token="+tok, nil, nil)
		r.expect(t, 200, "")
		fx.expectClosedOnce(t, tok)
	})
}

// testNoContent covers G14 and H15: a 204 carries no body and no
// Content-Type or Content-Length even when the app supplied them.
func testNoContent(t *testing.T, fx *fixture) {
	forFronts(t, fx.fronts, nil, func(t *testing.T, f front) {
		tok := newID(t, "tok")
		r := get(t, f, "/no_content?token="+tok)
		r.expect(t, 204, "")
		for _, h := range []string{"Content-Type", "Content-Length", "Transfer-Encoding"} {
			if v, ok := r.header[h]; ok {
				t.Errorf("204 response has %s: %q (G14)", h, v)
			}
		}
		if r.header.Get("X-Kept") != "1" {
			t.Errorf("X-Kept %q, want 1", r.header.Get("X-Kept"))
		}
		fx.expectClosedOnce(t, tok)
	})
}

// testFileWrapper covers W14 and G23: the bytes sent for a file_wrapper
// are exactly what iterating it gives (from the current position), for a
// real file (which may be sent by Go itself) and a BytesIO, and the file
// is closed once (W26).
func testFileWrapper(t *testing.T, fx *fixture) {
	self, err := os.ReadFile(filepath.Join(appDir("wsgi_conformance"), "app.py"))
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name  string
		query string
		want  []byte
	}{
		{"bytesio_block2", "src=bytesio&block=2", []byte("abc")},
		{"real_file", "src=self", self},
		{"real_file_offset", "src=self&offset=100&block=7", self[100:]},
		{"generated_300k_offset", "src=gen&size=300000&offset=1000&block=4096", pattern(300000)[1000:]},
		{"generated_empty", "src=gen&size=0", nil},
		{"offset_at_end", "src=gen&size=5000&offset=5000", nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			forFronts(t, fx.fronts, nil, func(t *testing.T, f front) {
				tok := newID(t, "tok")
				r := get(t, f, "/file_wrapper?"+c.query+"&token="+tok)
				if r.status != 200 || !bytes.Equal(r.body, c.want) {
					t.Errorf("got %d and %d bytes, want 200 and %d bytes (first difference at %d) (W14)",
						r.status, len(r.body), len(c.want), firstDiff(r.body, c.want))
				}
				fx.expectClosedOnce(t, tok)
			})
		})
	}
}

func firstDiff(a, b []byte) int {
	for i := 0; i < len(a) && i < len(b); i++ {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// testStatusReason covers U18 (the app's reason phrase reaches the client
// through nginx→uwsgi), H18 (Go's HTTP front writes the standard text),
// W16/G10 (a malformed status is a 500) and W29 (a one-item list gets a
// Content-Length).
func testStatusReason(t *testing.T, fx *fixture) {
	for _, c := range []struct{ status, httpLine string }{
		{"200 Froody", "200 OK"},
		{"404 Not Here", "404 Not Found"},
		{"418 Teapot Time", "418 I'm a teapot"},
	} {
		t.Run(strings.ReplaceAll(c.status, " ", "_"), func(t *testing.T) {
			t.Parallel()
			forFronts(t, fx.fronts, nil, func(t *testing.T, f front) {
				r := get(t, f, "/status?s="+url.QueryEscape(c.status))
				code := r.status
				r.expect(t, code, "status\n")
				want := c.httpLine
				if f.uwsgi {
					want = c.status
				}
				if r.statusLine != want {
					t.Errorf("status line %q, want %q (U18, H18)", r.statusLine, want)
				}
				if r.header.Get("Content-Length") != "7" {
					t.Errorf("Content-Length %q, want 7 (W29)", r.header.Get("Content-Length"))
				}
			})
		})
	}
	for _, bad := range []string{"200", "2000 OK", "20x OK", "099 Low", "200  OK\x01", "200 OK\r\nX-Injected: 1"} {
		t.Run("bad_"+url.QueryEscape(bad), func(t *testing.T) {
			t.Parallel()
			forFronts(t, fx.fronts, nil, func(t *testing.T, f front) {
				r := get(t, f, "/status?s="+url.QueryEscape(bad))
				expectGeneric500(t, fx, r)
				if _, ok := r.header["X-Injected"]; ok {
					t.Errorf("injected header reached the client (G11)")
				}
			})
		})
	}
}
