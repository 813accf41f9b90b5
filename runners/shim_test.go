package runners

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"testing/fstest"
)

var testShim = fstest.MapFS{
	"pkg/__init__.py": {Data: []byte("")},
	"pkg/main.py":     {Data: []byte("print('shim')\n")},
	"bin/run":         {Data: []byte("#!/bin/sh\n")},
}

func mustExtract(t *testing.T, base string) string {
	t.Helper()
	dir, err := ExtractShim(testShim, base)
	if err != nil {
		t.Fatalf("ExtractShim: %v", err)
	}
	return dir
}

func wantUntrusted(t *testing.T, base, because string) {
	t.Helper()
	dir, err := ExtractShim(testShim, base)
	if !errors.Is(err, ErrUntrustedCache) || !strings.Contains(err.Error(), because) {
		t.Fatalf("ExtractShim(%s) = %q, %v; want an untrusted-cache error saying %q", base, dir, err, because)
	}
}

// Extraction gives fixed modes whatever the umask, and the result passes
// its own check on the next start.
func TestExtractShimModes(t *testing.T) {
	base := filepath.Join(t.TempDir(), "cache")
	old := syscall.Umask(0)
	dir := mustExtract(t, base)
	syscall.Umask(old)
	for _, p := range []string{base, dir, filepath.Join(dir, "pkg")} {
		if fi, _ := os.Stat(p); fi.Mode().Perm() != 0o755 {
			t.Errorf("%s: mode %o, want 0755", p, fi.Mode().Perm())
		}
	}
	if fi, _ := os.Stat(filepath.Join(dir, "pkg", "main.py")); fi.Mode().Perm() != 0o644 {
		t.Errorf("main.py: mode %o, want 0644", fi.Mode().Perm())
	}
	if again := mustExtract(t, base); again != dir {
		t.Fatalf("second extraction %s, want %s", again, dir)
	}
}

// What an attacker or an accident can leave in the cache makes it unused.
func TestExtractShimRefusesTamperedCache(t *testing.T) {
	t.Run("cache dir world-writable", func(t *testing.T) {
		base := filepath.Join(t.TempDir(), "cache")
		mustExtract(t, base)
		os.Chmod(base, 0o777)
		wantUntrusted(t, base, "writable by group or others")
	})
	t.Run("planted file", func(t *testing.T) {
		base := filepath.Join(t.TempDir(), "cache")
		dir := mustExtract(t, base)
		os.WriteFile(filepath.Join(dir, "sitecustomize.py"), []byte("import os\n"), 0o644)
		wantUntrusted(t, base, "sitecustomize.py is not part of the shim")
	})
	t.Run("changed file", func(t *testing.T) {
		base := filepath.Join(t.TempDir(), "cache")
		dir := mustExtract(t, base)
		os.WriteFile(filepath.Join(dir, "pkg", "main.py"), []byte("print('evil')\n"), 0o644)
		wantUntrusted(t, base, "differs from the shim's")
	})
	t.Run("missing file", func(t *testing.T) {
		base := filepath.Join(t.TempDir(), "cache")
		dir := mustExtract(t, base)
		os.Remove(filepath.Join(dir, "bin", "run"))
		wantUntrusted(t, base, "lacks 1 of the shim's files")
	})
	t.Run("group-writable file", func(t *testing.T) {
		base := filepath.Join(t.TempDir(), "cache")
		dir := mustExtract(t, base)
		os.Chmod(filepath.Join(dir, "pkg", "main.py"), 0o664)
		wantUntrusted(t, base, "main.py is writable by group or others")
	})
	t.Run("symlinked file", func(t *testing.T) {
		base := filepath.Join(t.TempDir(), "cache")
		dir := mustExtract(t, base)
		main := filepath.Join(dir, "pkg", "main.py")
		os.Rename(main, main+".real")
		os.Symlink(main+".real", main)
		wantUntrusted(t, base, "")
	})
	t.Run("shim dir is a symlink", func(t *testing.T) {
		tmp := t.TempDir()
		base := filepath.Join(tmp, "cache")
		dir := mustExtract(t, base)
		os.Rename(dir, filepath.Join(tmp, "elsewhere"))
		os.Symlink(filepath.Join(tmp, "elsewhere"), dir)
		wantUntrusted(t, base, "is not a directory")
	})
	t.Run("base through a world-writable directory", func(t *testing.T) {
		open := filepath.Join(t.TempDir(), "open")
		os.Mkdir(open, 0o755)
		os.Chmod(open, 0o777) // not sticky: anyone may rename what is in it
		wantUntrusted(t, filepath.Join(open, "cache"), "and not sticky")
	})
	t.Run("base is someone's symlink", func(t *testing.T) {
		if os.Geteuid() != 0 {
			t.Skip("needs root to make a symlink of another user")
		}
		tmp := t.TempDir()
		real := filepath.Join(tmp, "real")
		mustExtract(t, real)
		link := filepath.Join(tmp, "cache")
		os.Symlink(real, link)
		if err := os.Lchown(link, 65534, 65534); err != nil {
			t.Fatal(err)
		}
		wantUntrusted(t, link, "symlink "+link+" belongs to uid 65534")
	})
	t.Run("file of another user", func(t *testing.T) {
		if os.Geteuid() != 0 {
			t.Skip("needs root to chown")
		}
		base := filepath.Join(t.TempDir(), "cache")
		dir := mustExtract(t, base)
		os.Chown(filepath.Join(dir, "pkg", "main.py"), 65534, 65534)
		wantUntrusted(t, base, "belongs to uid 65534")
	})
}

// Our own symlinks are followed, and the resolved directory is used.
func TestExtractShimFollowsOwnSymlink(t *testing.T) {
	tmp := t.TempDir()
	real := filepath.Join(tmp, "real")
	os.Mkdir(real, 0o755)
	link := filepath.Join(tmp, "link")
	os.Symlink("real", link)
	dir := mustExtract(t, link)
	if want, _ := filepath.EvalSymlinks(real); filepath.Dir(dir) != want {
		t.Fatalf("shim dir %s, want under %s", dir, want)
	}
}

// Python's bytecode cache beside the shim is allowed when it is ours and
// closed; otherwise it is removed (it is only a cache), and the shim used.
func TestExtractShimBytecodeCache(t *testing.T) {
	base := filepath.Join(t.TempDir(), "cache")
	dir := mustExtract(t, base)
	pyc := filepath.Join(dir, "pkg", "__pycache__")
	os.Mkdir(pyc, 0o755)
	os.WriteFile(filepath.Join(pyc, "main.cpython-311.pyc"), []byte("x"), 0o644)
	mustExtract(t, base)
	if _, err := os.Stat(pyc); err != nil {
		t.Fatalf("a sound __pycache__ was removed: %v", err)
	}
	os.Chmod(pyc, 0o777)
	mustExtract(t, base)
	if _, err := os.Stat(pyc); !os.IsNotExist(err) {
		t.Fatalf("a world-writable __pycache__ was kept: %v", err)
	}
}

func TestExtractShimPrivate(t *testing.T) {
	dir, err := ExtractShimPrivate(testShim)
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	fi, err := os.Stat(dir)
	if err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("private dir %s: %v %v, want mode 0700", dir, fi.Mode(), err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "pkg", "main.py")); err != nil || string(b) != "print('shim')\n" {
		t.Fatalf("main.py: %q %v", b, err)
	}
}
