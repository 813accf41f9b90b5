package e2e

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"math/rand/v2"
	"mime/multipart"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"
)

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// TestFlask runs testdata/apps/flask_app (Flask 2.2 from Debian) behind one
// bridge (2 workers) through every front: a real framework over W2–W12
// (environ, input), W22/W23 (streaming), W24/W26 and G2/G19 (errors and
// request ids in the log).
func TestFlask(t *testing.T) {
	fx := startFixture(t, "flask_app", "python:app:application", 2, 2)
	t.Run("W11_json_round_trip", func(t *testing.T) {
		t.Parallel()
		forFronts(t, fx.fronts, nil, func(t *testing.T, f front) {
			r := get(t, f, "/api/items/42?q=x%20y")
			expectJSON(t, r, 200, map[string]any{"id": 42.0, "name": "item-42", "q": "x y"})

			sent := map[string]any{"name": "café ☕", "n": []any{1.0, 2.0, 3.0}, "nested": map[string]any{"ok": true}}
			body, _ := json.Marshal(sent)
			r = request(t, f, http.MethodPost, "/api/echo", body, http.Header{"Content-Type": {"application/json"}})
			expectJSON(t, r, 201, map[string]any{"received": sent, "content_type": "application/json"})
		})
	})
	t.Run("W6_W11_form_post", func(t *testing.T) {
		t.Parallel()
		forFronts(t, fx.fronts, nil, func(t *testing.T, f front) {
			r := request(t, f, http.MethodPost, "/form", []byte("a=1&b=two+words&a=3&u=caf%C3%A9&empty="),
				http.Header{"Content-Type": {"application/x-www-form-urlencoded"}})
			expectJSON(t, r, 200, map[string]any{"form": map[string]any{
				"a": []any{"1", "3"}, "b": []any{"two words"}, "u": []any{"café"}, "empty": []any{""},
			}})
		})
	})
	t.Run("W11_upload_5MB", func(t *testing.T) {
		t.Parallel()
		data := make([]byte, 5<<20)
		_, _ = rand.NewChaCha8([32]byte{1, 2, 3}).Read(data)
		var buf bytes.Buffer
		mw := multipart.NewWriter(&buf)
		_ = mw.WriteField("note", "hi")
		fw, _ := mw.CreateFormFile("file", "blob.bin")
		_, _ = fw.Write(data)
		_ = mw.Close()
		forFronts(t, fx.fronts, nil, func(t *testing.T, f front) {
			r := request(t, f, http.MethodPost, "/upload", buf.Bytes(), http.Header{"Content-Type": {mw.FormDataContentType()}})
			expectJSON(t, r, 200, map[string]any{
				"filename": "blob.bin", "size": float64(len(data)), "sha256": sha256Hex(data),
				"fields": map[string]any{"note": "hi"},
			})
		})
	})
	t.Run("W23_streaming", func(t *testing.T) {
		t.Parallel()
		forFronts(t, fx.fronts, unbuffered, func(t *testing.T, f front) {
			st := getStream(t, f, "/stream?n=3&delay=1")
			want := "chunk 0 of 3 /stream\nchunk 1 of 3 /stream\nchunk 2 of 3 /stream\n"
			if st.resp.StatusCode != 200 || strings.Join(st.lines, "") != want {
				t.Fatalf("got %d %q, want 200 %q", st.resp.StatusCode, strings.Join(st.lines, ""), want)
			}
			if st.at[0] > time.Second || st.total < 2*time.Second {
				t.Errorf("first chunk after %v, whole stream %v: want < 1s and ≥ 2s (W23)", st.at[0], st.total)
			}
		})
	})
	t.Run("redirect", func(t *testing.T) {
		t.Parallel()
		forFronts(t, fx.fronts, nil, func(t *testing.T, f front) {
			r := get(t, f, "/redirect")
			if r.status != 302 || r.header.Get("Location") != "/api/items/7?q=moved" {
				t.Errorf("got %d Location %q, want 302 /api/items/7?q=moved", r.status, r.header.Get("Location"))
			}
		})
	})
	t.Run("not_found", func(t *testing.T) {
		t.Parallel()
		forFronts(t, fx.fronts, nil, func(t *testing.T, f front) {
			r := get(t, f, "/nope")
			if r.status != 404 || !strings.Contains(string(r.body), "Not Found") {
				t.Errorf("got %d %q, want 404 Not Found", r.status, r.body)
			}
		})
	})
	t.Run("G2_G8_G19_exception", func(t *testing.T) {
		t.Parallel()
		forFronts(t, fx.fronts, nil, func(t *testing.T, f front) {
			r := get(t, f, "/boom")
			if r.status != 500 {
				t.Errorf("status %d, want 500", r.status)
			}
			for _, leak := range []string{"flask-secret-boom", "Traceback", "RuntimeError"} {
				if strings.Contains(string(r.body), leak) {
					t.Errorf("body leaks %q: %q", leak, r.body)
				}
			}
			// Flask logs the traceback to wsgi.errors; each line is a
			// record carrying the request id.
			for _, want := range []string{"Traceback (most recent call last):", "RuntimeError: flask-secret-boom"} {
				if _, ok := fx.bridge.log.waitRecord(5*time.Second, func(l logRecord) bool {
					return l.reqID() == r.reqID && strings.Contains(l.raw, want)
				}); !ok {
					t.Errorf("no log record %q with request id %s (G2, G8, G19)", want, r.reqID)
				}
			}
		})
	})
}

func expectJSON(t *testing.T, r result, status int, want map[string]any) {
	t.Helper()
	var got map[string]any
	if err := json.Unmarshal(r.body, &got); err != nil || r.status != status || r.bodyErr != nil {
		t.Fatalf("got %d %q (%v, body error %v), want %d and JSON", r.status, r.body, err, r.bodyErr, status)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q, want application/json", ct)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
}
