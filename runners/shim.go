package runners

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// ExtractShim writes a language's embedded shim into a directory named after
// its content hash under base (created if missing) and returns that
// directory. Extraction is idempotent and safe for concurrent bridges: files
// are written to a temporary directory that is renamed into place.
func ExtractShim(shim fs.FS, base string) (string, error) {
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
	dir := filepath.Join(base, "shim-"+hex.EncodeToString(h.Sum(nil))[:16])
	if _, err := os.Stat(dir); err == nil {
		return dir, nil
	}
	if err := os.MkdirAll(base, 0o755); err != nil {
		return "", fmt.Errorf("create shim cache %s: %w", base, err)
	}
	tmp, err := os.MkdirTemp(base, ".shim-*")
	if err != nil {
		return "", fmt.Errorf("create shim cache %s: %w", base, err)
	}
	defer os.RemoveAll(tmp)
	if err := os.CopyFS(tmp, shim); err != nil {
		return "", fmt.Errorf("extract shim: %w", err)
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		return "", err
	}
	if err := os.Rename(tmp, dir); err != nil {
		if _, statErr := os.Stat(dir); statErr == nil {
			return dir, nil // another bridge won the race
		}
		return "", fmt.Errorf("install shim: %w", err)
	}
	return dir, nil
}

// ShimCacheDir is where extracted shims live: $BRIDGE_CACHE_DIR, else the
// user cache directory, else the temp directory.
func ShimCacheDir() string {
	if d := os.Getenv("BRIDGE_CACHE_DIR"); d != "" {
		return d
	}
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "bridge")
	}
	return filepath.Join(os.TempDir(), "bridge-cache")
}
