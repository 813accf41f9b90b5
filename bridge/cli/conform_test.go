package cli

import (
	"context"
	"io"
	"strings"
	"testing"
)

func TestConformUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "--runner is required"},
		{[]string{"--runner", "python:app", "--threads", "2", "--slots", "1"}, "slots ≥ threads"},
		{[]string{"--runner", "python:app", "extra"}, `unexpected argument "extra"`},
		{[]string{"--runner", "exec:'unterminated"}, "quote"},
	} {
		err := Run(context.Background(), append([]string{"conform"}, tc.args...), io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), tc.want) || ExitCode(err) != 2 {
			t.Errorf("conform %q: %v (exit %d), want a usage error naming %q", tc.args, err, ExitCode(err), tc.want)
		}
	}
}

// A runner that cannot load the kit app is one error, with a hint, not a
// table of thirty failures.
func TestConformRunnerThatDoesNotStart(t *testing.T) {
	t.Setenv("BRIDGE_CACHE_DIR", t.TempDir())
	var out strings.Builder
	err := Run(context.Background(), []string{"conform", "--runner", "python:no_such_module:app", "--chdir", t.TempDir()}, &out, io.Discard)
	if err == nil || ExitCode(err) != 1 || !strings.Contains(err.Error(), "cannot import module 'no_such_module'") ||
		!strings.Contains(err.Error(), "runners/kit/README.md") || strings.Contains(out.String(), "FAIL") {
		t.Fatalf("got %v\n%s", err, out.String())
	}
}
