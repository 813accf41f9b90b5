package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"bridge/runners"
)

// bridge shims fills the cache serve would use, once: a second run (an
// image rebuilt) finds the same directories, and serve can then start with
// the cache read-only (readOnlyRootFilesystem), verifying only.
func TestShimsFillsTheCache(t *testing.T) {
	cache := filepath.Join(t.TempDir(), "cache")
	t.Setenv("BRIDGE_CACHE_DIR", cache)
	run := func() string {
		var out, errOut bytes.Buffer
		if err := Run(context.Background(), []string{"shims"}, &out, &errOut); err != nil {
			t.Fatalf("bridge shims: %v\n%s", err, errOut.String())
		}
		return out.String()
	}
	first := run()
	lines := strings.Split(strings.TrimSpace(first), "\n")
	if len(lines) != len(runners.Languages) {
		t.Fatalf("bridge shims printed %q, want one line per language", first)
	}
	for _, l := range lines {
		name, dir, _ := strings.Cut(l, "\t")
		if _, ok := runners.Languages[name]; !ok || filepath.Dir(dir) != cache {
			t.Fatalf("line %q: want LANGUAGE<TAB>a directory in %s", l, cache)
		}
	}
	if err := os.Chmod(cache, 0o500); err != nil { // nothing may be written now
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Chmod(cache, 0o700) })
	if os.Geteuid() != 0 { // root writes through any mode
		if again := run(); again != first {
			t.Fatalf("second run on a read-only cache printed %q, want %q", again, first)
		}
	}
	for name, lang := range runners.Languages {
		if dir, err := runners.ExtractShim(lang.Shim, cache); err != nil || filepath.Dir(dir) != cache {
			t.Fatalf("%s: serve's extraction on the filled cache = %q, %v", name, dir, err)
		}
	}
}

// A cache others may write is refused, with the reason, as serve refuses it.
func TestShimsRefusesAnUntrustedCache(t *testing.T) {
	cache := filepath.Join(t.TempDir(), "open")
	if err := os.Mkdir(cache, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(cache, 0o777); err != nil {
		t.Fatal(err)
	}
	t.Setenv("BRIDGE_CACHE_DIR", cache)
	var out, errOut bytes.Buffer
	err := Run(context.Background(), []string{"shims"}, &out, &errOut)
	if err == nil || !strings.Contains(err.Error(), "not used") {
		t.Fatalf("bridge shims on a world-writable cache: %v; want it refused", err)
	}
}
