package e2e

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"mime/multipart"
	"net/http"
	"net/http/cookiejar"
	"reflect"
	"strings"
	"testing"
	"time"
)

// TestSinatra runs testdata/apps/sinatra_app (Debian's Sinatra 3 on Rack
// 2.2) through every front: params, JSON, upload (R10 input), sessions and
// cookies (repeated Set-Cookie, R19), `stream do |out|` (R24: the first
// chunk before the stream finishes), redirect, 404 and an error page that
// leaks nothing (G2).
func TestSinatra(t *testing.T) {
	fx := startFixture(t, "sinatra_app", "ruby:config.ru", 2, 2)
	t.Run("routes_and_params", func(t *testing.T) {
		forFronts(t, fx.fronts, nil, func(t *testing.T, f front) {
			get(t, f, "/hello/caf%C3%A9").expect(t, 200, "Hello, café!")
			r := get(t, f, "/params?a=1&a=2&b=x%20y")
			var got map[string]any
			if err := json.Unmarshal(r.body, &got); err != nil || r.status != 200 {
				t.Fatalf("params: %d %q", r.status, r.body)
			}
			if want := map[string]any{"a": []any{"1", "2"}, "b": []any{"x y"}}; !reflect.DeepEqual(got, want) {
				t.Errorf("params: got %v, want %v", got, want)
			}
		})
	})
	t.Run("json", func(t *testing.T) {
		forFronts(t, fx.fronts, nil, func(t *testing.T, f front) {
			r := request(t, f, http.MethodPost, "/json", []byte(`{"x":[1,2]}`), http.Header{"Content-Type": {"application/json"}})
			var got map[string]any
			if err := json.Unmarshal(r.body, &got); err != nil || r.status != 200 {
				t.Fatalf("json: %d %q", r.status, r.body)
			}
			if want := map[string]any{"method": "POST", "received": map[string]any{"x": []any{1.0, 2.0}}}; !reflect.DeepEqual(got, want) {
				t.Errorf("json: got %v, want %v", got, want)
			}
		})
	})
	t.Run("upload_3MB", func(t *testing.T) {
		data := make([]byte, 3<<20)
		_, _ = rand.NewChaCha8([32]byte{7, 8, 9}).Read(data)
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
	t.Run("sessions_cookies", func(t *testing.T) {
		forFronts(t, fx.fronts, nil, func(t *testing.T, f front) {
			jar, _ := cookiejar.New(nil)
			c := &http.Client{Jar: jar, Timeout: 20 * time.Second}
			for i := 1; i <= 3; i++ {
				resp, err := c.Get(f.base + "/count")
				if err != nil {
					t.Fatal(err)
				}
				var b bytes.Buffer
				_, _ = b.ReadFrom(resp.Body)
				resp.Body.Close()
				if want := "count " + string(rune('0'+i)); b.String() != want {
					t.Fatalf("request %d: %q, want %q (session cookie not kept)", i, b.String(), want)
				}
			}
		})
	})
	t.Run("R24_streaming", func(t *testing.T) {
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
	t.Run("redirect_404_error", func(t *testing.T) {
		forFronts(t, fx.fronts, nil, func(t *testing.T, f front) {
			r := get(t, f, "/redirect")
			if r.status != 302 || !strings.HasSuffix(r.header.Get("Location"), "/hello/redirected") {
				t.Errorf("redirect: %d Location %q", r.status, r.header.Get("Location"))
			}
			if r := get(t, f, "/no/such/page"); r.status != 404 {
				t.Errorf("404: got %d", r.status)
			}
			r = get(t, f, "/die")
			if r.status != 500 || strings.Contains(string(r.body), "secret failure detail") {
				t.Errorf("error page: %d %q", r.status, r.body)
			}
			get(t, f, "/hello/again").expect(t, 200, "Hello, again!")
		})
	})
}
