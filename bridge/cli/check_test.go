package cli

import (
	"bytes"
	"context"
	"io"
	"strings"
	"testing"
)

// The demo app that `make run` serves loads through the real Python runner.
// Needs python3-h2 and python3-protobuf (make deps installs them); a missing interpreter fails
// the test with bridge's own message, which names the packages.
func TestCheckDemoApp(t *testing.T) {
	t.Setenv("BRIDGE_CACHE_DIR", t.TempDir())
	var out bytes.Buffer
	err := Run(context.Background(), []string{"check", "--runner", "python:app:application", "--chdir", "../../deploy/demo"}, &out, io.Discard)
	if err != nil {
		t.Fatalf("check failed: %v", err)
	}
	for _, want := range []string{"ok: app:application loaded", "interface: wsgi/1.0", "language:  python 3."} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}

func TestCheckReportsImportError(t *testing.T) {
	t.Setenv("BRIDGE_CACHE_DIR", t.TempDir())
	err := Run(context.Background(), []string{"check", "--runner", "python:no_such_module:app", "--chdir", "../../deploy/demo"}, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "cannot import module 'no_such_module'") || ExitCode(err) != 1 {
		t.Fatalf("got %v", err)
	}
}
