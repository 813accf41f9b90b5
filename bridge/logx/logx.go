// Package logx sets up bridge's zerolog logger and turns runner stderr into
// structured log records.
package logx

import (
	"fmt"
	"io"
	"os"
	"time"

	"github.com/rs/zerolog"
)

// New returns the root logger writing to w in format "json" or "console", at
// the given level ("debug", "info", "warn", "error").
func New(w io.Writer, format, level string) (zerolog.Logger, error) {
	lvl, err := zerolog.ParseLevel(level)
	if err != nil || level == "" {
		return zerolog.Logger{}, fmt.Errorf("log level %q: want debug, info, warn or error", level)
	}
	switch format {
	case "json":
		w = c1Writer{w}
	case "console":
		w = newConsoleWriter(w)
	default:
		return zerolog.Logger{}, fmt.Errorf("log format %q: want json or console", format)
	}
	zerolog.TimeFieldFormat = time.RFC3339Nano
	return zerolog.New(w).Level(lvl).With().Timestamp().Logger(), nil
}

// Stderr is the default log destination.
var Stderr io.Writer = os.Stderr
