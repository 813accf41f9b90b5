package e2e

import (
	"bytes"
	"net/http"
	"net/http/cookiejar"
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
