// Command bridge serves Python (WSGI), Perl (PSGI) and Ruby (Rack) apps, and
// through exec runner plugins any other language, behind nginx over uwsgi and
// HTTP.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"bridge/bridge/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	go func() {
		// After the first signal, restore default handling: a second
		// SIGINT/SIGTERM stops bridge at once.
		<-ctx.Done()
		stop()
	}()
	if err := cli.Run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "bridge:", err)
		os.Exit(cli.ExitCode(err))
	}
}
