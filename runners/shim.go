package runners

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"
)

// ExtractShim writes a language's embedded shim into a directory named after
// its content hash under base (created if missing) and returns that
// directory. Extraction is idempotent and safe for concurrent bridges: files
// are written to a temporary directory that is renamed into place.
//
// The interpreter runs whatever that directory holds, so it is used only if
// nobody but bridge's user (and root) can have written it: base, every
// directory and symlink on the way to it, and everything in the shim
// directory (TrustedPath, verifyShim), which must also be exactly the
// embedded files. Otherwise ExtractShim returns an *UntrustedCacheError and
// nothing else happens; the caller extracts into a private directory
// instead (ExtractShimPrivate).
func ExtractShim(shim fs.FS, base string) (string, error) {
	name, err := shimName(shim)
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(base, 0o755); err != nil {
		return "", fmt.Errorf("create shim cache %s: %w", base, err)
	}
	real, err := TrustedPath(base, true)
	if err != nil {
		return "", &UntrustedCacheError{Path: base, Reason: err.Error()}
	}
	dir := filepath.Join(real, name)
	if _, err := os.Lstat(dir); err == nil {
		return dir, verifyCached(shim, dir)
	}
	tmp, err := os.MkdirTemp(real, ".shim-*")
	if err != nil {
		return "", fmt.Errorf("create shim cache %s: %w", base, err)
	}
	defer os.RemoveAll(tmp)
	if err := writeShim(shim, tmp); err != nil {
		return "", err
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		return "", err
	}
	if err := os.Rename(tmp, dir); err != nil {
		if _, statErr := os.Lstat(dir); statErr == nil {
			return dir, verifyCached(shim, dir) // another bridge won the race
		}
		return "", fmt.Errorf("install shim: %w", err)
	}
	return dir, nil
}

// ExtractShimPrivate writes the shim into a new directory of its own under
// the temp directory, readable only by bridge's user, and returns it; the
// caller removes it when done. It is where the shim goes when the shared
// cache cannot be trusted.
func ExtractShimPrivate(shim fs.FS) (string, error) {
	dir, err := os.MkdirTemp("", "bridge-shim-")
	if err != nil {
		return "", fmt.Errorf("extract shim: %w", err)
	}
	// The temp directory's own chain must hold too (a world-writable
	// $TMPDIR without the sticky bit would let others rename ours away).
	if _, err := TrustedPath(dir, true); err != nil {
		os.RemoveAll(dir)
		return "", fmt.Errorf("no private place to extract the shim (%v): set BRIDGE_CACHE_DIR to a directory only bridge's user can write", err)
	}
	if err := writeShim(shim, dir); err != nil {
		os.RemoveAll(dir)
		return "", err
	}
	return dir, nil
}

// UntrustedCacheError says why an existing shim cache is not used.
type UntrustedCacheError struct {
	Path   string
	Reason string
}

func (e *UntrustedCacheError) Error() string {
	return fmt.Sprintf("shim cache %s is not used: %s", e.Path, e.Reason)
}

// ErrUntrustedCache matches every *UntrustedCacheError (errors.Is).
var ErrUntrustedCache = errors.New("untrusted shim cache")

// Is makes errors.Is(err, ErrUntrustedCache) true.
func (e *UntrustedCacheError) Is(target error) bool { return target == ErrUntrustedCache }

// shimName is the cache directory name for shim: its content hash.
func shimName(shim fs.FS) (string, error) {
	h := sha256.New()
	err := fs.WalkDir(shim, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(shim, p)
		if err != nil {
			return err
		}
		fmt.Fprintf(h, "%s\x00%d\x00", p, len(b))
		h.Write(b)
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("read embedded shim: %w", err)
	}
	return "shim-" + hex.EncodeToString(h.Sum(nil))[:16], nil
}

// writeShim copies shim into the empty directory dir with fixed modes
// (directories 0755, files 0644), whatever the umask: a cache that a
// permissive umask left group-writable would fail its own check.
func writeShim(shim fs.FS, dir string) error {
	if err := os.CopyFS(dir, shim); err != nil {
		return fmt.Errorf("extract shim: %w", err)
	}
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		mode := os.FileMode(0o644)
		if d.IsDir() {
			mode = 0o755
		}
		return os.Chmod(p, mode)
	})
}

// verifyCached wraps verifyShim's complaint as an UntrustedCacheError.
func verifyCached(shim fs.FS, dir string) error {
	if err := verifyShim(shim, dir); err != nil {
		return &UntrustedCacheError{Path: dir, Reason: err.Error()}
	}
	return nil
}

// verifyShim checks an extracted shim before it is run: dir is a real
// directory, and everything in it is a directory or regular file owned by
// bridge's user (or root), writable by nobody else, and is one of the
// embedded files with the same bytes; no embedded file is missing. The one
// extra thing allowed is Python's bytecode cache (__pycache__, which the
// interpreter writes beside the shim's modules): one that fails the
// ownership test is removed (it is only a cache), one that cannot be is an
// error.
func verifyShim(shim fs.FS, dir string) error {
	want := map[string]bool{} // path -> is a directory
	err := fs.WalkDir(shim, ".", func(p string, d fs.DirEntry, err error) error {
		if err == nil && p != "." {
			want[p] = d.IsDir()
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("read embedded shim: %w", err)
	}
	fi, err := os.Lstat(dir)
	if err != nil {
		return err
	}
	if err := ownedAndClosed(dir, fi, true); err != nil {
		return err
	}
	seen := 0
	return filepathWalk(dir, func(p string, fi os.FileInfo) (skip bool, err error) {
		rel, _ := filepath.Rel(dir, p)
		rel = filepath.ToSlash(rel)
		if path.Base(rel) == "__pycache__" && fi.IsDir() {
			if _, embedded := want[rel]; !embedded {
				if verr := verifyBytecode(p, fi); verr != nil {
					if rerr := os.RemoveAll(p); rerr != nil {
						return true, fmt.Errorf("%s (and cannot remove it: %v)", verr, rerr)
					}
				}
				return true, nil
			}
		}
		isDir, embedded := want[rel]
		if !embedded {
			return false, fmt.Errorf("%s is not part of the shim", p)
		}
		if err := ownedAndClosed(p, fi, isDir); err != nil {
			return false, err
		}
		seen++
		if !isDir {
			b, err := os.ReadFile(p)
			if err != nil {
				return false, err
			}
			w, err := fs.ReadFile(shim, rel)
			if err != nil {
				return false, err
			}
			if !bytes.Equal(b, w) {
				return false, fmt.Errorf("%s differs from the shim's", p)
			}
		}
		return false, nil
	}, func() error {
		if seen != len(want) {
			return fmt.Errorf("%s lacks %d of the shim's files", dir, len(want)-seen)
		}
		return nil
	})
}

// verifyBytecode checks a __pycache__ directory: ours, closed to others,
// holding only regular files that are ours and closed too.
func verifyBytecode(dir string, fi os.FileInfo) error {
	if err := ownedAndClosed(dir, fi, true); err != nil {
		return err
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range ents {
		p := filepath.Join(dir, e.Name())
		efi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		if err := ownedAndClosed(p, efi, false); err != nil {
			return err
		}
	}
	return nil
}

// filepathWalk walks dir's entries (not dir itself) in lexical order
// without following symlinks; visit may skip a directory's content. done
// runs after the walk.
func filepathWalk(dir string, visit func(p string, fi os.FileInfo) (bool, error), done func() error) error {
	err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if p == dir {
			return nil
		}
		skip, err := visit(p, fi)
		if err != nil {
			return err
		}
		if skip && fi.IsDir() {
			return filepath.SkipDir
		}
		return nil
	})
	if err != nil {
		return err
	}
	return done()
}

// ownedAndClosed: p (Lstat's fi) is a directory if dir, else a regular file,
// owned by bridge's effective user or root, and not writable by group or
// others.
func ownedAndClosed(p string, fi os.FileInfo, dir bool) error {
	switch {
	case dir && !fi.IsDir():
		return fmt.Errorf("%s is not a directory", p)
	case !dir && !fi.Mode().IsRegular():
		return fmt.Errorf("%s is not a regular file", p)
	}
	if uid := owner(fi); uid != os.Geteuid() && uid != 0 {
		return fmt.Errorf("%s belongs to uid %d, not to bridge's user (%d)", p, uid, os.Geteuid())
	}
	if fi.Mode().Perm()&0o022 != 0 {
		return fmt.Errorf("%s is writable by group or others (mode %04o)", p, fi.Mode().Perm())
	}
	return nil
}

func owner(fi os.FileInfo) int {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return int(st.Uid)
	}
	return -1
}

// TrustedPath checks that nobody but bridge's effective user and root can
// change what the absolute path p names, and returns p with its symlinks
// resolved. Every directory on the way (from /) and every symlink followed
// must belong to bridge's user or root; a directory on the way may be
// writable by others only if it is sticky, like /tmp (then nobody else can
// rename or remove what bridge's user owns in it). With final set, p itself
// must be a directory that is not writable by group or others at all.
func TrustedPath(p string, final bool) (string, error) {
	real, err := trustedPath(p, 0)
	if err != nil {
		return "", err
	}
	if final {
		fi, err := os.Lstat(real)
		if err != nil {
			return "", err
		}
		if err := ownedAndClosed(real, fi, true); err != nil {
			return "", err
		}
	}
	return real, nil
}

func trustedPath(p string, depth int) (string, error) {
	if depth > 40 {
		return "", fmt.Errorf("%s: too many levels of symbolic links", p)
	}
	if !filepath.IsAbs(p) {
		abs, err := filepath.Abs(p)
		if err != nil {
			return "", err
		}
		p = abs
	}
	cur := "/"
	if err := safeDir(cur); err != nil {
		return "", err
	}
	for _, comp := range strings.Split(filepath.Clean(p), "/") {
		switch comp {
		case "", ".":
			continue
		case "..":
			cur = filepath.Dir(cur) // cur has no symlinks left: this is the real parent
			continue
		}
		next := filepath.Join(cur, comp)
		fi, err := os.Lstat(next)
		if err != nil {
			return "", err
		}
		if fi.Mode()&os.ModeSymlink != 0 {
			if uid := owner(fi); uid != os.Geteuid() && uid != 0 {
				return "", fmt.Errorf("symlink %s belongs to uid %d, not to bridge's user (%d) or root", next, uid, os.Geteuid())
			}
			target, err := os.Readlink(next)
			if err != nil {
				return "", err
			}
			if !filepath.IsAbs(target) {
				target = filepath.Join(cur, target)
			}
			if cur, err = trustedPath(target, depth+1); err != nil {
				return "", err
			}
			continue
		}
		if err := safeDir(next); err != nil {
			return "", err
		}
		cur = next
	}
	return cur, nil
}

// safeDir: d is a directory of bridge's user or root that others cannot
// write, or can only as in a sticky directory.
func safeDir(d string) error {
	fi, err := os.Lstat(d)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s is not a directory", d)
	}
	if uid := owner(fi); uid != os.Geteuid() && uid != 0 {
		return fmt.Errorf("%s belongs to uid %d, not to bridge's user (%d) or root", d, uid, os.Geteuid())
	}
	if fi.Mode().Perm()&0o022 != 0 && fi.Mode()&os.ModeSticky == 0 {
		return fmt.Errorf("%s is writable by group or others (mode %04o) and not sticky", d, fi.Mode().Perm())
	}
	return nil
}

// ShimCacheDir is where extracted shims live: $BRIDGE_CACHE_DIR, else the
// user cache directory, else the temp directory (shared with every user:
// ExtractShim checks what it finds there).
func ShimCacheDir() string {
	if d := os.Getenv("BRIDGE_CACHE_DIR"); d != "" {
		return d
	}
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "bridge")
	}
	return filepath.Join(os.TempDir(), "bridge-cache")
}
