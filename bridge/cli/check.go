package cli

import (
	"context"
	"fmt"
	"io"

	"bridge/bridge/dispatch"
	"bridge/bridge/supervise"
)

// check loads the app in one runner, exactly as serve would, and reports.
// With --config it first checks the file's settings as serve would.
func check(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o := &options{}
	if err := parseFlags("check", o, false, args, stderr); err != nil {
		return err
	}
	// A config file is a whole serve deployment: check it all, listeners
	// included, not only the part check itself uses.
	if o.config != "" {
		if err := validate(o); err != nil {
			return err
		}
	}
	log, err := newLogger(o, stderr)
	if err != nil {
		return err
	}
	cmd, err := runnerCommand(ctx, o)
	if err != nil {
		return err
	}
	pool := dispatch.NewPool(0, 0)
	sup := supervise.New(supervise.Config{
		Command: cmd, Runner: o.runner, Workers: 1, Threads: 1,
		StartTimeout: o.startWait, Log: log,
	}, pool)
	if err := sup.Start(ctx); err != nil {
		return err
	}
	defer sup.Stop(0)
	info := sup.Info()
	fmt.Fprintf(stdout, "ok: %s loaded\n  language:  %s %s\n  interface: %s\n  server:    %s\n  interpreter: %s\n  directory: %s\n",
		info.App, info.Language, info.LanguageVersion, info.Interface, info.Server, cmd.Path, cmd.Dir)
	return nil
}
