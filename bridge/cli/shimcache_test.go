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

// Issue 14: with HOME unset the shim cache is $TMPDIR/bridge-cache, which
// any local user can create first. A cache planted there (owned by another
// user, or world-writable) is never run: bridge extracts the shim into a
// private directory instead, says so, and removes that directory at exit.
func TestPlantedShimCacheIsNotRun(t *testing.T) {
	cases := []struct {
		name  string
		plant func(t *testing.T, base string)
	}{
		{"world-writable", func(t *testing.T, base string) {
			if err := os.Chmod(base, 0o777); err != nil {
				t.Fatal(err)
			}
		}},
		{"another user's", func(t *testing.T, base string) {
			if os.Geteuid() != 0 {
				t.Skip("needs root to chown the planted cache to another user")
			}
			err := filepath.Walk(base, func(p string, _ os.FileInfo, err error) error {
				if err != nil {
					return err
				}
				return os.Lchown(p, 65534, 65534)
			})
			if err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tmp := t.TempDir()
			t.Setenv("TMPDIR", tmp)
			t.Setenv("HOME", "")
			t.Setenv("XDG_CACHE_HOME", "")
			t.Setenv("BRIDGE_CACHE_DIR", "")
			base := runners.ShimCacheDir()
			if base != filepath.Join(tmp, "bridge-cache") {
				t.Fatalf("shim cache with HOME unset: %s, want $TMPDIR/bridge-cache", base)
			}
			// The attacker computes the shim's directory name as bridge
			// does (here: by extracting it elsewhere) and plants a shim
			// whose __main__ leaves a mark.
			genuine, err := runners.ExtractShim(runners.Languages["python"].Shim, t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			planted := filepath.Join(base, filepath.Base(genuine), "bridge_runner")
			if err := os.MkdirAll(planted, 0o755); err != nil {
				t.Fatal(err)
			}
			mark := filepath.Join(tmp, "planted-shim-ran")
			evil := "open(" + pyQuote(mark) + ", 'w').write('pwned')\nraise SystemExit(1)\n"
			for _, f := range []string{"__init__.py", "__main__.py"} {
				if err := os.WriteFile(filepath.Join(planted, f), []byte(evil), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			tc.plant(t, base)

			var out bytes.Buffer
			logs := &lockedBuf{}
			err = Run(context.Background(), []string{"check", "--runner", "python:app:application", "--chdir", "../../deploy/demo"}, &out, logs)
			if _, statErr := os.Stat(mark); statErr == nil {
				t.Fatal("bridge ran the planted shim")
			}
			if err != nil || !strings.Contains(out.String(), "ok: app:application loaded") {
				t.Fatalf("check with a planted cache: %v\n%s\n%s", err, out.String(), logs)
			}
			if !strings.Contains(logs.String(), "shim cache not trusted") || !strings.Contains(logs.String(), base) {
				t.Errorf("no warning naming the untrusted cache:\n%s", logs)
			}
			left, _ := filepath.Glob(filepath.Join(tmp, "bridge-shim-*"))
			if len(left) != 0 {
				t.Errorf("private shim directory left behind: %v", left)
			}
		})
	}
}

func pyQuote(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
}
