package admin

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

type fakeWorkers struct{ ready bool }

func (f *fakeWorkers) Ready() bool { return f.ready }

func probe(t *testing.T, h http.Handler, path string) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
	return rec.Code, rec.Body.String()
}

func TestProbes(t *testing.T) {
	w := &fakeWorkers{}
	s := New(w, nil)
	h := s.Handler()
	if code, _ := probe(t, h, "/healthz"); code != 200 {
		t.Fatalf("healthz %d", code)
	}
	if code, body := probe(t, h, "/readyz"); code != 503 || body != "no ready worker\n" {
		t.Fatalf("readyz without workers: %d %q", code, body)
	}
	w.ready = true
	if code, body := probe(t, h, "/readyz"); code != 200 || body != "ready\n" {
		t.Fatalf("readyz: %d %q", code, body)
	}
	s.Drain()
	if code, body := probe(t, h, "/readyz"); code != 503 || body != "draining\n" {
		t.Fatalf("readyz while draining: %d %q", code, body)
	}
	if code, _ := probe(t, h, "/healthz"); code != 200 {
		t.Fatalf("healthz while draining %d", code)
	}
	if code, _ := probe(t, h, "/nope"); code != 404 {
		t.Fatalf("unknown path %d", code)
	}
}
