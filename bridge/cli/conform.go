package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"bridge/bridge/conform"
)

const conformUsage = `Usage: bridge conform --runner SPEC [--chdir DIR] [flags]

Checks a runner against the runner contract (runners/CONTRACT.md): it starts
the runner as 'bridge serve' would, sends it requests for the kit app
(runners/kit/README.md) frame by frame over its gRPC socket, and prints one
line per check with the contract items it covers. Exits 1 if a check fails.

  bridge conform --runner python:app:application --chdir runners/kit/python
  bridge conform --runner 'exec:node ../runner.js app.js' --chdir examples/runners/node/kit

Flags:
`

// conformCmd runs the runner conformance kit and prints its table.
func conformCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o := &options{}
	var slots int
	var only string
	var verbose bool
	fs := flag.NewFlagSet("conform", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, conformUsage); fs.PrintDefaults() }
	fs.StringVar(&o.runner, "runner", "", "the runner to check, as for serve: python:MODULE:CALLABLE, perl:FILE.psgi, ruby:FILE.ru or exec:CMD ARGS")
	fs.StringVar(&o.chdir, "chdir", "", "the kit app's directory (default: the current directory)")
	fs.StringVar(&o.interpreter, "interpreter", "", "interpreter for a built-in runner (default: discovered as serve does)")
	fs.IntVar(&o.threads, "threads", 1, "app threads the runner is told to run (BRIDGE_THREADS)")
	fs.IntVar(&slots, "slots", 4, "Slot streams the runner is told it may get (BRIDGE_SLOTS); the pipelining checks need more than --threads")
	fs.DurationVar(&o.startWait, "start-timeout", 30*time.Second, "how long the runner may take to start")
	fs.StringVar(&only, "only", "", "run only the checks whose names contain one of these comma-separated words")
	fs.BoolVar(&verbose, "v", false, "copy the runners' log lines to stderr")
	fs.StringVar(&o.logLevel, "log-level", "info", "log level the runners are given")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError(err.Error())
	}
	if fs.NArg() > 0 {
		return usageError(fmt.Sprintf("unexpected argument %q", fs.Arg(0)))
	}
	if o.threads < 1 || slots < o.threads {
		return usageError(fmt.Sprintf("--threads %d --slots %d: want threads ≥ 1 and slots ≥ threads", o.threads, slots))
	}
	cmd, err := runnerCommand(ctx, o)
	if err != nil {
		return err
	}
	cfg := conform.Config{Command: cmd, Spec: o.runner, Threads: o.threads, Slots: slots, StartTimeout: o.startWait}
	if only != "" {
		cfg.Only = strings.Split(only, ",")
	}
	if verbose {
		cfg.Log = stderr
	}
	fmt.Fprintf(stdout, "bridge conform: %s in %s (%d thread(s), %d slot(s))\n\n", o.runner, cmd.Dir, o.threads, slots)
	results, err := conform.Run(ctx, cfg)
	if err != nil && results == nil {
		return fmt.Errorf("%w\n(the kit needs the runner's kit app in --chdir, here %s: runners/kit/README.md)", err, cmd.Dir)
	}
	conform.WriteTable(stdout, results)
	if err != nil {
		return err
	}
	for _, r := range results {
		if r.Outcome == "FAIL" {
			return errConformFailed
		}
	}
	return nil
}

// errConformFailed is returned after the table, which already says why.
var errConformFailed = errors.New("the runner does not conform (see the failed checks above)")
