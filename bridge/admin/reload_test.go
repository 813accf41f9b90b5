package admin

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"bridge/bridge/supervise"
)

// countingReloader counts the generations it starts; each reload waits for a
// value on release (if set) and fails with fail (if set).
type countingReloader struct {
	gens    atomic.Int64
	release chan struct{}
	fail    error
	entered chan struct{}
}

func (f *countingReloader) Reload(ctx context.Context) (int, error) {
	if f.entered != nil {
		f.entered <- struct{}{}
	}
	if f.release != nil {
		select {
		case <-f.release:
		case <-ctx.Done():
			return int(f.gens.Load()), ctx.Err()
		}
	}
	if f.fail != nil {
		return int(f.gens.Load()) + 1, f.fail
	}
	return int(f.gens.Add(1)) + 1, nil
}

func post(h http.Handler, path string, header map[string]string) *httptest.ResponseRecorder {
	req := httptest.NewRequest("POST", path, nil)
	for k, v := range header {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// POST /reload exists only when --admin-reload or --admin-token-file says so.
func TestReloadOffByDefault(t *testing.T) {
	s := New(&fakeWorkers{ready: true}, nil)
	s.Reload = Coalesce(&countingReloader{})
	if rec := post(s.Handler(), "/reload", nil); rec.Code != http.StatusNotFound && rec.Code != http.StatusMethodNotAllowed {
		t.Fatalf("POST /reload without --admin-reload: %d %q", rec.Code, rec.Body)
	}
	s.ReloadOpen = true
	if rec := post(s.Handler(), "/reload", nil); rec.Code != 200 || rec.Body.String() != "reloaded: generation 2 serving\n" {
		t.Fatalf("POST /reload with --admin-reload: %d %q", rec.Code, rec.Body)
	}
}

// With a token, POST /reload needs "Authorization: Bearer TOKEN".
func TestReloadToken(t *testing.T) {
	f := &countingReloader{}
	s := New(&fakeWorkers{ready: true}, nil)
	s.Reload, s.Token = Coalesce(f), "s3cret-token"
	s.ReloadOpen = true // the token wins over --admin-reload
	h := s.Handler()
	for _, auth := range []string{"", "Bearer", "Bearer ", "Bearer s3cret", "Bearer s3cret-token2", "Basic s3cret-token", "s3cret-token", "Bearer S3CRET-TOKEN"} {
		rec := post(h, "/reload", map[string]string{"Authorization": auth})
		if rec.Code != http.StatusUnauthorized || !strings.HasPrefix(rec.Header().Get("WWW-Authenticate"), "Bearer") {
			t.Errorf("Authorization %q: %d %q", auth, rec.Code, rec.Body)
		}
	}
	if n := f.gens.Load(); n != 0 {
		t.Fatalf("%d reloads without the token", n)
	}
	for _, auth := range []string{"Bearer s3cret-token", "bearer s3cret-token"} {
		if rec := post(h, "/reload", map[string]string{"Authorization": auth}); rec.Code != 200 {
			t.Errorf("Authorization %q: %d %q", auth, rec.Code, rec.Body)
		}
	}
	// Probes need no token.
	if code, _ := probe(t, h, "/healthz"); code != 200 {
		t.Errorf("healthz %d", code)
	}
}

// A browser's request (it carries Origin) is refused, token or not: a page
// the operator visits cannot reload bridge.
func TestReloadRefusesBrowsers(t *testing.T) {
	f := &countingReloader{}
	s := New(&fakeWorkers{ready: true}, nil)
	s.Reload, s.ReloadOpen = Coalesce(f), true
	h := s.Handler()
	for _, hdr := range []map[string]string{
		{"Origin": "https://evil.example"},
		{"Origin": "null"},
		{"Origin": "http://127.0.0.1:9100"}, // same origin, e.g. after DNS rebinding
		{"Sec-Fetch-Site": "cross-site"},
	} {
		if rec := post(h, "/reload", hdr); rec.Code != http.StatusForbidden {
			t.Errorf("%v: %d %q", hdr, rec.Code, rec.Body)
		}
	}
	s.Token = "tok"
	h = s.Handler()
	if rec := post(h, "/reload", map[string]string{"Origin": "https://evil.example", "Authorization": "Bearer tok"}); rec.Code != http.StatusForbidden {
		t.Errorf("with the token and Origin: %d", rec.Code)
	}
	if n := f.gens.Load(); n != 0 {
		t.Fatalf("%d reloads from a browser", n)
	}
	// Reading the probes from a page is harmless (and CORS keeps the answer
	// from the page anyway).
	req := httptest.NewRequest("GET", "/healthz", nil)
	req.Header.Set("Origin", "https://evil.example")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != 200 {
		t.Errorf("GET /healthz with Origin: %d", rec.Code)
	}
}

// A failed reload answers 500 without the reason, which may quote the
// app's configuration; the reason is in bridge's log (the fleet logs it).
func TestReloadFailureBodyIsGeneric(t *testing.T) {
	f := &countingReloader{fail: errors.New("runner exited: KeyError: DATABASE_PASSWORD=hunter2")}
	s := New(&fakeWorkers{ready: true}, nil)
	s.Reload, s.ReloadOpen = Coalesce(f), true
	rec := post(s.Handler(), "/reload", nil)
	body := rec.Body.String()
	if rec.Code != 500 || strings.Contains(body, "hunter2") || strings.Contains(body, "KeyError") ||
		body != "reload failed: see bridge's log; generation 1 keeps serving\n" {
		t.Fatalf("failed reload: %d %q", rec.Code, body)
	}
	s.Reload = Coalesce(&countingReloader{fail: supervise.ErrStopping})
	if rec := post(s.Handler(), "/reload", nil); rec.Code != 503 {
		t.Fatalf("reload while stopping: %d %q", rec.Code, rec.Body)
	}
}

// Five reloads asked for at once start two generations, not five: the
// first, and one more after it that the other four share.
func TestReloadsCoalesce(t *testing.T) {
	f := &countingReloader{release: make(chan struct{}), entered: make(chan struct{}, 10)}
	c := Coalesce(f)
	s := New(&fakeWorkers{ready: true}, nil)
	s.Reload, s.ReloadOpen = c, true
	h := s.Handler()

	type answer struct {
		code int
		body string
	}
	answers := make(chan answer, 5)
	var wg sync.WaitGroup
	send := func() {
		defer wg.Done()
		rec := post(h, "/reload", nil)
		answers <- answer{rec.Code, rec.Body.String()}
	}
	wg.Add(1)
	go send()
	<-f.entered // the first reload runs
	for range 4 {
		wg.Add(1)
		go send()
	}
	// All four are waiting for the next reload before the first ends.
	deadline := time.Now().Add(5 * time.Second)
	for {
		c.mu.Lock()
		n := 0
		if c.next != nil {
			n = c.next.waiters
		}
		c.mu.Unlock()
		if n == 4 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d callers waiting for the next reload, want 4", n)
		}
		time.Sleep(time.Millisecond)
	}
	f.release <- struct{}{} // the first generation is up
	<-f.entered             // the second starts
	f.release <- struct{}{}
	wg.Wait()
	close(answers)
	bodies := map[string]int{}
	for a := range answers {
		if a.code != 200 {
			t.Errorf("answer %d %q", a.code, a.body)
		}
		bodies[a.body]++
	}
	if got := f.gens.Load(); got != 2 {
		t.Fatalf("5 concurrent reloads started %d generations, want 2", got)
	}
	if bodies["reloaded: generation 2 serving\n"] != 1 || bodies["reloaded: generation 3 serving\n"] != 4 {
		t.Fatalf("answers: %v", bodies)
	}
	select {
	case <-f.entered:
		t.Fatal("a third reload started")
	default:
	}
	// Idle again: the next call starts a reload of its own.
	close(f.release)
	if gen, err := c.Reload(context.Background()); err != nil || gen != 4 {
		t.Fatalf("reload after: %d %v", gen, err)
	}
}

// A caller whose context ends stops waiting; the reload goes on for the
// others.
func TestReloadsCallerGivesUp(t *testing.T) {
	f := &countingReloader{release: make(chan struct{}), entered: make(chan struct{}, 10)}
	c := Coalesce(f)
	go c.Reload(context.Background())
	<-f.entered
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := c.Reload(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err %v", err)
	}
	close(f.release)
}

func TestReadToken(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	if tok, err := ReadToken(write("ok", "  abc-123_XYZ\n", 0o600)); err != nil || tok != "abc-123_XYZ" {
		t.Fatalf("good token: %q %v", tok, err)
	}
	if tok, err := ReadToken(write("ro", "abc\n", 0o400)); err != nil || tok != "abc" {
		t.Fatalf("0400 token: %q %v", tok, err)
	}
	for name, c := range map[string]struct {
		content string
		mode    os.FileMode
		want    string
	}{
		"empty":        {"\n \n", 0o600, "empty"},
		"group-read":   {"abc", 0o640, "group or others"},
		"world-read":   {"abc", 0o604, "group or others"},
		"group-write":  {"abc", 0o620, "group or others"},
		"two-words":    {"abc def", 0o600, "one word"},
		"control-char": {"abc\x01", 0o600, "one word"},
	} {
		_, err := ReadToken(write(name, c.content, c.mode))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error saying %q", name, err, c.want)
		}
	}
	if _, err := ReadToken(filepath.Join(dir, "missing")); err == nil {
		t.Error("missing file: no error")
	}
	if _, err := ReadToken(dir); err == nil {
		t.Error("a directory: no error")
	}
}
