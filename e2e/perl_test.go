package e2e

import (
	"strings"
	"testing"
	"time"
)

// perlApp is one PSGI framework app under testdata/apps with the routes
// both apps share.
type perlApp struct {
	dir       string
	framework string
	stream    bool // has /stream: three ticks a second apart
}

// TestPerlFrameworks runs Dancer2 and Mojolicious (through Mojo's own PSGI
// adapter) behind nginx→uwsgi, nginx→proxy and direct HTTP: the shared
// framework routes (params, JSON, upload bodies P9/X1, streaming P17/P18,
// redirects, 404, error pages that leak nothing P23/G2) and, for Dancer2,
// psgix.harakiri (X4).
func TestPerlFrameworks(t *testing.T) {
	for _, app := range []perlApp{
		{dir: "dancer2_app", framework: "Dancer2", stream: true},
		{dir: "mojo_app", framework: "Mojolicious", stream: true},
	} {
		t.Run(app.framework, func(t *testing.T) {
			t.Parallel()
			fx := startFixture(t, app.dir, "perl:app.psgi", 2, 1)
			testPerlApp(t, fx, app)
		})
	}
}

func testPerlApp(t *testing.T, fx *fixture, app perlApp) {
	testFrameworkRoutes(t, fx, app.stream)
	if app.framework == "Dancer2" { // the route sets psgix.harakiri.commit
		t.Run("X4_harakiri", func(t *testing.T) {
			// Not parallel with the others: it retires a worker on purpose,
			// and requests meanwhile must still all succeed.
			r := get(t, fx.direct, "/harakiri")
			if r.status != 200 || !strings.HasSuffix(string(r.body), " retiring\n") {
				t.Fatalf("harakiri: %d %q", r.status, r.body)
			}
			for i := 0; i < 20; i++ {
				get(t, fx.direct, "/hello/after").expect(t, 200, "Hello, after!")
			}
			if _, ok := fx.bridge.log.waitRecord(10*time.Second, func(l logRecord) bool {
				return strings.Contains(l.raw, "worker ready") && strings.Contains(l.raw, `"worker":"w`) && strings.Contains(l.raw, ".1\"")
			}); !ok {
				t.Errorf("no replacement worker after harakiri:\n%s", fx.bridge.log.tail(20))
			}
		})
	}
}
