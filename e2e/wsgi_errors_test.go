package e2e

import (
	"bufio"
	"net/http"
	"strings"
	"testing"
	"time"
)

const genericBody = "Internal Server Error\n"

// expectGeneric500 checks G2: bridge's fixed 500, nothing from the app, and
// an error logged for the request.
func expectGeneric500(t *testing.T, fx *fixture, r result) {
	t.Helper()
	r.expect(t, 500, genericBody)
	if ct := r.header.Get("Content-Type"); ct != "text/plain; charset=utf-8" {
		t.Errorf("Content-Type %q, want text/plain; charset=utf-8 (G2)", ct)
	}
	if _, ok := fx.bridge.log.waitRecord(5*time.Second, func(l logRecord) bool {
		return l.reqID() == r.reqID && l.str("level") == "error"
	}); !ok {
		t.Errorf("no error logged for request %s (G2)", r.reqID)
	}
}

// expectTraceback waits for a logged traceback of request id that
// mentions secret.
func expectTraceback(t *testing.T, log *logBuffer, id, secret string) {
	t.Helper()
	if _, ok := log.waitRecord(5*time.Second, func(l logRecord) bool {
		// bridge's "app error" line carries the error frame's traceback;
		// a shim's own log line carries it under runner_log.
		tb := l.str("traceback") + l.runner("traceback")
		return l.reqID() == id && strings.Contains(tb, "Traceback") && strings.Contains(tb, secret)
	}); !ok {
		t.Errorf("no traceback mentioning %q logged with request id %s (G2)", secret, id)
	}
}

// testErrorBeforeHead covers W27 and G2: an exception before
// start_response, an exception while iterating before any non-empty chunk,
// and an iterable used up without start_response all give bridge's generic
// 500; the exception text stays in the log; close() still runs.
func testErrorBeforeHead(t *testing.T, fx *fixture) {
	for _, c := range []struct {
		name, path string
		secret     string // in the traceback, never in the response
		closes     bool
	}{
		{"raise_before_start_response", "/raise_before", "secret-before-", false},
		{"raise_in_iter_before_data", "/raise_in_iter", "secret-iter-", true},
		{"no_start_response", "/no_start_response", "", true},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			forFronts(t, fx.fronts, nil, func(t *testing.T, f front) {
				tok := newID(t, "tok")
				marker := newID(t, "m")
				r := get(t, f, c.path+"?token="+tok+"&marker="+marker)
				expectGeneric500(t, fx, r)
				if strings.Contains(string(r.body), "secret") || strings.Contains(string(r.body), "Traceback") {
					t.Errorf("exception text in the body: %q (G2)", r.body)
				}
				for k, vs := range r.header {
					if strings.Contains(strings.Join(vs, " "), "secret") {
						t.Errorf("exception text in header %s: %q (G2)", k, vs)
					}
				}
				if c.secret != "" {
					expectTraceback(t, fx.bridge.log, r.reqID, c.secret+marker)
				}
				if c.closes {
					fx.expectClosedOnce(t, tok)
				}
			})
		})
	}
}

// testErrorAfterHead covers W27, G3 and U20: an exception after the first
// chunk aborts the response. Direct HTTP cuts the chunked body; nginx sees
// the abort (RST over TCP, cut connection from the HTTP front) and cuts the
// client's response. Through nginx→uwsgi over a unix socket a close without
// Content-Length looks like a clean end (U20's known limitation), so there
// only the leak and close() checks apply.
func testErrorAfterHead(t *testing.T, fx *fixture) {
	forFronts(t, fx.fronts, nil, func(t *testing.T, f front) {
		tok := newID(t, "tok")
		marker := newID(t, "m")
		r := request(t, f, http.MethodGet, "/raise_after?token="+tok+"&marker="+marker, nil, nil)
		if r.status != 200 {
			t.Errorf("status %d, want 200 (the head was sent before the exception)", r.status)
		}
		if !strings.HasPrefix("first-chunk\n", string(r.body)) {
			t.Errorf("body %q, want a prefix of %q and nothing else (G3)", r.body, "first-chunk\n")
		}
		if f.abortVisible && r.bodyErr == nil {
			t.Errorf("body %q ended cleanly; want a broken response after the app raised (G3, U20)", r.body)
		}
		if strings.Contains(string(r.body), "secret") {
			t.Errorf("exception text in the body: %q (G3)", r.body)
		}
		expectTraceback(t, fx.bridge.log, r.reqID, "secret-after-"+marker)
		if _, ok := fx.bridge.log.waitRecord(5*time.Second, func(l logRecord) bool {
			return l.reqID() == r.reqID && l.str("message") == "request" && l.fields["aborted"] == true
		}); !ok {
			t.Errorf("no access log line with aborted=true for %s (G3)", r.reqID)
		}
		fx.expectClosedOnce(t, tok)
	})
}

// testDisconnect covers G4, W26 and G5: the client reads the first line of
// an endless stream and goes away; the app's close() runs exactly once
// within 1 s. Ticks are padded to 4 KiB so that the buffering nginx front
// passes them on too.
func testDisconnect(t *testing.T, fx *fixture) {
	forFronts(t, fx.fronts, nil, func(t *testing.T, f front) {
		tok := newID(t, "tok")
		req := newRequest(t, f, http.MethodGet, "/endless?pad=4096&token="+tok, nil, nil)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != 200 {
			t.Fatalf("status %d", resp.StatusCode)
		}
		line, err := bufio.NewReader(resp.Body).ReadString('\n')
		if err != nil || !strings.HasPrefix(line, "tick 0.") || len(line) != 4096 {
			t.Fatalf("first line %.20q… (%d bytes), %v", line, len(line), err)
		}
		gone := time.Now()
		resp.Body.Close() // not read to the end: the connection is closed
		deadline := gone.Add(5 * time.Second)
		for fx.closeCount(t, "close", tok) == 0 && time.Now().Before(deadline) {
			time.Sleep(pollEvery)
		}
		if took := time.Since(gone); took > time.Second {
			t.Errorf("close() ran %v after the client went away, want < 1s (G4)", took.Round(time.Millisecond))
		}
		fx.expectClosedOnce(t, tok)

		// G4: "logged at info, not as an app error".
		id := req.Header.Get("X-Request-Id")
		t.Run("G4_logged_at_info", func(t *testing.T) {
			if _, ok := fx.bridge.log.waitRecord(5*time.Second, func(l logRecord) bool {
				return l.reqID() == id && l.str("message") == "request"
			}); !ok {
				t.Fatalf("no access log line for %s", id)
			}
			for _, l := range fx.bridge.log.forRequest(id) {
				if lv := l.str("level"); lv == "error" || lv == "warn" {
					t.Errorf("client disconnect logged at %s, want info (G4): %s", lv, l.raw)
				}
			}
		})
	})
}

// testBadHeaders covers G11, H16, H17 and W17: CR, LF or NUL in a header
// value, a bad header name, a value above U+00FF, or CR/LF in the status
// raise in start_response; uncaught that is a 500 with bridge's body, and
// no injected header reaches the client.
func testBadHeaders(t *testing.T, fx *fixture) {
	for _, kind := range []string{"crlf", "lf", "cr", "nul", "name-space", "name-colon", "name-crlf", "wide", "status-crlf"} {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			forFronts(t, fx.fronts, nil, func(t *testing.T, f front) {
				r := get(t, f, "/bad_header?kind="+kind)
				expectGeneric500(t, fx, r)
				for _, h := range []string{"Set-Cookie", "X-Injected", "X-Bad"} {
					if v, ok := r.header[h]; ok {
						t.Errorf("header %s: %q reached the client (G11, H16)", h, v)
					}
				}
			})
		})
	}
}

// testStdout covers G7 and G8: print(), a raw write to fd 1 and stderr
// output never reach the response; they are logged, print() with the
// request's id and stream stdout.
func testStdout(t *testing.T, fx *fixture) {
	forFronts(t, fx.fronts, nil, func(t *testing.T, f front) {
		marker := newID(t, "m")
		r := get(t, f, "/print?marker="+marker)
		r.expect(t, 200, "clean\n")
		if r.header.Get("Content-Length") != "6" || r.header.Get("Content-Type") != "text/plain" {
			t.Errorf("headers changed: %v (G7)", r.header)
		}
		if _, ok := fx.bridge.log.waitRecord(5*time.Second, func(l logRecord) bool {
			return strings.Contains(l.runner("message"), "print-marker-"+marker)
		}); !ok {
			t.Errorf("print() output not logged (G7)")
		} else if _, ok := fx.bridge.log.waitRecord(0, func(l logRecord) bool {
			return strings.Contains(l.runner("message"), "print-marker-"+marker) &&
				l.reqID() == r.reqID && l.runner("stream") == "stdout"
		}); !ok {
			t.Errorf("print() output logged without request id %s / stream stdout (G8)", r.reqID)
		}
		for _, m := range []string{"fd1-marker-", "stderr-marker-"} {
			if _, ok := fx.bridge.log.waitRecord(5*time.Second, func(l logRecord) bool {
				return strings.Contains(l.raw, m+marker)
			}); !ok {
				t.Errorf("%s output not logged (G7, G8)", m)
			}
		}
	})
}

// testWSGIErrors covers W13 and G8: write, writelines and a flushed partial
// line on wsgi.errors become one log record per line, with the request id
// and stream "errors"; non-ASCII text is fine.
func testWSGIErrors(t *testing.T, fx *fixture) {
	forFronts(t, fx.fronts, nil, func(t *testing.T, f front) {
		marker := newID(t, "m")
		r := get(t, f, "/errors?marker="+marker)
		r.expect(t, 200, "logged\n")
		for _, msg := range []string{"errors-marker-" + marker + " café ☃", "errors-lines-" + marker, "errors-partial-" + marker} {
			if _, ok := fx.bridge.log.waitRecord(5*time.Second, func(l logRecord) bool {
				return l.runner("message") == msg && l.reqID() == r.reqID && l.runner("stream") == "errors"
			}); !ok {
				t.Errorf("no log record %q with request id %s and stream errors (W13, G8)", msg, r.reqID)
			}
		}
	})
}

// testValidator covers W34: routes wrapped in wsgiref.validate.validator
// (inside the app) answer normally, so the server side broke none of its
// assertions, and it logged no warning or error for them.
func testValidator(t *testing.T, fx *fixture) {
	body := []byte(strings.Repeat("validated input ", 64))
	cases := []struct {
		name, method, path string
		body               []byte
		want               string
	}{
		{"hello", "GET", "/validated/hello", nil, "hello validated\n"},
		{"stream", "GET", "/validated/stream", nil, "v0\nv1\nv2\n"},
		{"write", "GET", "/validated/write", nil, "w-i"},
		{"input", "POST", "/validated/input", body,
			"got 1024 " + sha256Hex(body)},
		{"file_wrapper", "GET", "/validated/file", nil, "validated-file"},
		{"head", "HEAD", "/validated/hello", nil, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			forFronts(t, fx.fronts, nil, func(t *testing.T, f front) {
				r := request(t, f, c.method, c.path, c.body, http.Header{"Content-Type": {"application/octet-stream"}})
				r.expect(t, 200, c.want)
				if _, ok := fx.bridge.log.waitRecord(5*time.Second, func(l logRecord) bool {
					return l.reqID() == r.reqID && l.str("message") == "request"
				}); !ok {
					t.Fatalf("no access log line for %s", r.reqID)
				}
				for _, l := range fx.bridge.log.forRequest(r.reqID) {
					// The access line's level is about the front (see
					// W30/U23 for HEAD); the rest comes from the runner.
					if lv := l.str("level"); lv != "info" && lv != "debug" && l.str("message") != "request" {
						t.Errorf("validator run logged at %s: %s (W34)", lv, l.raw)
					}
				}
			})
		})
	}
	t.Cleanup(func() {
		for _, l := range fx.bridge.log.records() {
			if strings.Contains(l.raw, "WSGIWarning") || strings.Contains(l.raw, "without being closed") {
				t.Errorf("wsgiref.validate complaint in the log (W34): %s", l.raw)
			}
		}
	})
}
