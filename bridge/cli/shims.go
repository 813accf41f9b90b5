package cli

import (
	"flag"
	"fmt"
	"io"

	"bridge/runners"
)

// shimsCmd extracts the built-in runners' shims into the shim cache
// ($BRIDGE_CACHE_DIR, else the default) and prints where each went. An
// image whose root filesystem is mounted read-only (Kubernetes'
// readOnlyRootFilesystem) runs it once at build time, as the user that
// serves: bridge serve then only verifies the cached shims, and needs no
// writable place for them.
func shimsCmd(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("shims", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, `Usage: bridge shims

Extracts the Python, Perl and Ruby runner shims bridge carries into the shim
cache ($BRIDGE_CACHE_DIR, else $XDG_CACHE_HOME/bridge or ~/.cache/bridge,
else $TMPDIR/bridge-cache),
checked as 'bridge serve' checks it (only bridge's user may write it), and
prints each directory. Run it at image build time, as the user that serves,
when the root filesystem will be read-only: serve then only verifies them.
`)
	}
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return nil
		}
		return usageError(err.Error())
	}
	if fs.NArg() > 0 {
		return usageError(fmt.Sprintf("shims takes no arguments, got %q", fs.Args()))
	}
	base := runners.ShimCacheDir()
	for _, name := range runners.LanguageNames() {
		dir, err := runners.ExtractShim(runners.Languages[name].Shim, base)
		if err != nil {
			return fmt.Errorf("%s shim: %w", name, err)
		}
		fmt.Fprintf(stdout, "%s\t%s\n", name, dir)
	}
	return nil
}
