package e2e

import (
	"bytes"
	"net/http"
	"net/http/cookiejar"
	"strings"
	"testing"
	"time"
)

// TestSinatra runs testdata/apps/sinatra_app (Debian's Sinatra 3 on Rack
// 2.2) through every front: the shared framework routes (params, JSON,
// upload through rack.input R8/R10, `stream do |out|` R24 with the first
// chunk before the stream finishes, redirect, 404, an error page that leaks
// nothing G2), plus sessions over cookies.
func TestSinatra(t *testing.T) {
	fx := startFixture(t, "sinatra_app", "ruby:config.ru", 2, 2)
	testFrameworkRoutes(t, fx, true)
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
}

// TestRails runs a minimal single-file Rails app (Debian's ruby-rails 6.1)
// through every front: routing with params, JSON in and out, a redirect,
// Rails' own 404 and an error page without the exception text (G2).
func TestRails(t *testing.T) {
	fx := startFixture(t, "rails_app", "ruby:config.ru", 2, 2)
	forFronts(t, fx.fronts, nil, func(t *testing.T, f front) {
		get(t, f, "/hello/caf%C3%A9").expect(t, 200, "Hello, café!")
		get(t, f, "/params?a=1&a=2&b=x%20y").expect(t, 200, `{"a":["1","2"],"b":["x y"]}`)
		r := request(t, f, http.MethodPost, "/json", []byte(`{"x":[1,2]}`), http.Header{"Content-Type": {"application/json"}})
		r.expect(t, 200, `{"received":{"x":[1,2]},"method":"POST"}`)
		r = get(t, f, "/redirect")
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
	})
}
