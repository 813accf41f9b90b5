package e2e

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"mime/multipart"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"
)

// testFrameworkRoutes checks the routes every framework test app
// (testdata/apps/{dancer2,mojo,sinatra}_app) shares: /hello/:name, /params,
// /json, /upload, /stream (when stream), /redirect, a 404 and /die — with
// the same expected answers whatever the language.
func testFrameworkRoutes(t *testing.T, fx *fixture, stream bool) {
	t.Run("routes_and_params", func(t *testing.T) {
		forFronts(t, fx.fronts, nil, func(t *testing.T, f front) {
			get(t, f, "/hello/caf%C3%A9").expect(t, 200, "Hello, café!")
			r := get(t, f, "/params?a=1&a=2&b=x%20y")
			var got map[string]any
			if err := json.Unmarshal(r.body, &got); err != nil || r.status != 200 {
				t.Fatalf("params: %d %q", r.status, r.body)
			}
			want := map[string]any{"a": []any{"1", "2"}, "b": []any{"x y"}}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("params: got %v, want %v", got, want)
			}
		})
	})
	t.Run("json", func(t *testing.T) {
		forFronts(t, fx.fronts, nil, func(t *testing.T, f front) {
			r := request(t, f, http.MethodPost, "/json", []byte(`{"x":[1,2],"s":"ok"}`), http.Header{"Content-Type": {"application/json"}})
			var got map[string]any
			if err := json.Unmarshal(r.body, &got); err != nil || r.status != 200 {
				t.Fatalf("json: %d %q", r.status, r.body)
			}
			want := map[string]any{"method": "POST", "received": map[string]any{"x": []any{1.0, 2.0}, "s": "ok"}}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("json: got %v, want %v", got, want)
			}
		})
	})
	t.Run("upload_3MB", func(t *testing.T) {
		data := make([]byte, 3<<20)
		_, _ = rand.NewChaCha8([32]byte{4, 5, 6}).Read(data)
		var buf bytes.Buffer
		mw := multipart.NewWriter(&buf)
		fw, _ := mw.CreateFormFile("file", "blob.bin")
		_, _ = fw.Write(data)
		_ = mw.Close()
		forFronts(t, fx.fronts, nil, func(t *testing.T, f front) {
			r := request(t, f, http.MethodPost, "/upload", buf.Bytes(), http.Header{"Content-Type": {mw.FormDataContentType()}})
			var got map[string]any
			if err := json.Unmarshal(r.body, &got); err != nil || r.status != 200 {
				t.Fatalf("upload: %d %q", r.status, r.body)
			}
			if got["size"] != float64(len(data)) || got["sha256"] != sha256Hex(data) || got["name"] != "blob.bin" {
				t.Errorf("upload: got %v", got)
			}
		})
	})
	if stream {
		t.Run("streaming", func(t *testing.T) {
			forFronts(t, fx.fronts, unbuffered, func(t *testing.T, f front) {
				st := getStream(t, f, "/stream")
				if strings.Join(st.lines, "") != "tick 1\ntick 2\ntick 3\n" {
					t.Fatalf("stream: %q", st.lines)
				}
				if st.at[0] > time.Second || st.total < 2*time.Second {
					t.Errorf("first chunk after %v, whole stream %v: want < 1s and ≥ 2s", st.at[0], st.total)
				}
			})
		})
	}
	t.Run("redirect_404", func(t *testing.T) {
		forFronts(t, fx.fronts, nil, func(t *testing.T, f front) {
			r := get(t, f, "/redirect")
			if r.status != 302 || !strings.HasSuffix(r.header.Get("Location"), "/hello/redirected") {
				t.Errorf("redirect: %d Location %q", r.status, r.header.Get("Location"))
			}
			if r := get(t, f, "/no/such/page"); r.status != 404 {
				t.Errorf("404: got %d", r.status)
			}
		})
	})
	t.Run("error_page", func(t *testing.T) {
		forFronts(t, fx.fronts, nil, func(t *testing.T, f front) {
			r := get(t, f, "/die")
			if r.status != 500 || strings.Contains(string(r.body), "secret failure detail") {
				t.Errorf("error page: %d %q", r.status, r.body)
			}
			// The app still serves after a die.
			get(t, f, "/hello/again").expect(t, 200, "Hello, again!")
		})
	})
}
