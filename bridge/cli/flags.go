// Package cli implements bridge's subcommands: flag parsing, validation and
// wiring of fronts, dispatch and supervision. cmd/bridge only calls Run.
package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"
)

// options are the flags shared by serve and check.
type options struct {
	config      string
	runner      string
	chdir       string
	interpreter string
	env         listFlag // KEY=VALUE for the runners only (--env)
	workers     int
	threads     int
	pipeline    int
	startWait   time.Duration

	uwsgi       listFlag
	http        listFlag
	admin       listFlag
	socketMode  string
	socketGroup string
	serverName  string
	adminReload bool
	adminToken  string
	adminSecret string // the token in adminToken, read by validate

	maxRequests  int
	maxJitter    int
	maxLifetime  time.Duration
	maxRSS       sizeFlag
	timeout      time.Duration
	cancelGrace  time.Duration
	maxConns     int
	grace        time.Duration
	backlog      int
	queueTimeout time.Duration
	maxBody      sizeFlag

	headerTimeout time.Duration
	bodyTimeout   time.Duration
	writeTimeout  time.Duration
	maxHeaders    int
	maxHeaderSize sizeFlag

	logFormat string
	logLevel  string
}

// listFlag is a repeatable string flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

// sizeFlag is a byte size: 1048576, 512K, 10M, 1G.
type sizeFlag int64

func (s *sizeFlag) String() string { return strconv.FormatInt(int64(*s), 10) }
func (s *sizeFlag) Set(v string) error {
	mult := int64(1)
	num := strings.ToUpper(strings.TrimSpace(v))
	for suffix, m := range map[string]int64{"K": 1 << 10, "M": 1 << 20, "G": 1 << 30} {
		if strings.HasSuffix(num, suffix) {
			num, mult = strings.TrimSuffix(num, suffix), m
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n < 0 {
		return fmt.Errorf("want a byte size such as 1048576, 512K, 10M or 1G")
	}
	*s = sizeFlag(n * mult)
	return nil
}

func newFlagSet(name string, o *options, serve bool, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.config, "config", "", "YAML file of settings whose keys are flag names (workers: 4); the command line and BRIDGE_<FLAG> win over it")
	fs.StringVar(&o.runner, "runner", "", "the app to run: python:MODULE:CALLABLE (e.g. python:app:application), perl:FILE.psgi, ruby:FILE.ru, or exec:CMD ARGS for a runner plugin")
	fs.StringVar(&o.chdir, "chdir", "", "directory to run the app in (its import root); default: the current directory")
	fs.StringVar(&o.interpreter, "interpreter", "", "interpreter to use (default: $BRIDGE_PYTHON, $BRIDGE_PERL or $BRIDGE_RUBY, then the language's usual names, e.g. python3 and /usr/bin/python3: the first that has the runner's modules)")
	fs.Var(&o.env, "env", "KEY=VALUE set in the runners' environment only, not bridge's (repeatable); a reload applies changes. BRIDGE_* names are bridge's own and refused; a PYTHONPATH, PERL5LIB or RUBYLIB given here comes after the runner's shim")
	fs.DurationVar(&o.startWait, "start-timeout", 60*time.Second, "how long a worker may take to load the app")
	fs.StringVar(&o.logFormat, "log-format", "json", "log format: json or console")
	fs.StringVar(&o.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	if !serve {
		return fs
	}
	fs.IntVar(&o.workers, "workers", 2, "runner processes")
	fs.IntVar(&o.threads, "threads", 1, "app threads per runner process: requests its app runs at once")
	fs.IntVar(&o.pipeline, "pipeline", 8, "requests each busy runner may hold beyond --threads, waiting their turn inside it: they share its gRPC reads, writes and wake-ups (0 = every request waits in bridge's queue until a thread is free)")
	fs.Var(&o.uwsgi, "uwsgi", "uwsgi listener for nginx uwsgi_pass: unix:/path, host:port, or fd:NAME for the socket systemd passed with FileDescriptorName=NAME (repeatable)")
	fs.Var(&o.http, "http", "HTTP/1.1 listener: host:port, unix:/path or fd:NAME (repeatable)")
	fs.Var(&o.admin, "admin", "admin listener (off by default; host:port, unix:/path or fd:NAME): /healthz (alive), /readyz (a worker is ready and bridge is not draining), /metrics (Prometheus), and POST /reload if --admin-reload or --admin-token-file")
	fs.StringVar(&o.socketMode, "socket-mode", "0660", "permissions of unix sockets bridge creates (octal, 0001-0777; not those systemd passed, which keep SocketMode=): by default only their owner and group may connect, since a uwsgi client is trusted with REMOTE_ADDR, HTTPS, REMOTE_USER... (see --socket-group)")
	fs.StringVar(&o.socketGroup, "socket-group", "", "group (name or id) given to the unix sockets bridge creates, e.g. www-data so that nginx may connect (default: bridge's own group); bridge must be root or a member of it, and an unknown group or a failed chgrp stops it at start")
	fs.BoolVar(&o.adminReload, "admin-reload", false, "serve POST /reload on the admin listener to anyone who can reach it (off by default); requests from web pages (with an Origin header) are refused with 403")
	fs.StringVar(&o.adminToken, "admin-token-file", "", "file holding a token that POST /reload must present as 'Authorization: Bearer TOKEN', else 401 (turns on POST /reload); read at start, must not be empty nor readable by group or others (chmod 600)")
	fs.StringVar(&o.serverName, "server-name", "localhost", "SERVER_NAME when the request names no host")
	fs.IntVar(&o.maxRequests, "max-requests", 0, "recycle a worker after this many requests (0 = never); its replacement is ready first")
	fs.IntVar(&o.maxJitter, "max-requests-jitter", 0, "add up to this many requests to each worker's --max-requests, so workers do not recycle together")
	fs.DurationVar(&o.maxLifetime, "max-lifetime", 0, "recycle a worker after it has run this long (0 = never), plus up to 10% at random")
	fs.Var(&o.maxRSS, "max-rss", "recycle a worker whose process tree uses more memory than this (0 = never): bytes, or with K, M, G")
	fs.DurationVar(&o.timeout, "timeout", 60*time.Second, "per-request deadline (0 = none): 504 if the app has not started answering, else the response is cut off")
	fs.DurationVar(&o.cancelGrace, "cancel-grace", 5*time.Second, "how long an app may keep running a request past its --timeout before bridge logs the worker's stacks and replaces it (0 = never checked)")
	fs.IntVar(&o.maxConns, "max-connections", 0, "open client connections per listener (0 = no limit); beyond it new connections wait in the kernel's accept queue")
	fs.DurationVar(&o.grace, "grace", 30*time.Second, "on SIGTERM/SIGINT, how long requests in flight may take to finish")
	fs.IntVar(&o.backlog, "backlog", 1024, "requests that may wait for a free slot; more get 503")
	fs.DurationVar(&o.queueTimeout, "queue-timeout", 30*time.Second, "how long a request may wait for a free slot before 503")
	o.maxBody = 1 << 30
	fs.Var(&o.maxBody, "max-body-size", "largest request body accepted (413 beyond): bytes, or with K, M, G")
	fs.DurationVar(&o.headerTimeout, "header-timeout", 30*time.Second, "how long a client may take to send a request's head (HTTP headers or the uwsgi vars)")
	fs.DurationVar(&o.bodyTimeout, "body-timeout", 30*time.Second, "how long a request body may make no progress (one read) before the request fails with 408; bodies are read before a worker is taken")
	fs.DurationVar(&o.writeTimeout, "write-timeout", 30*time.Second, "how long one write of the response may wait for a client that does not read before the connection is cut and the worker freed")
	fs.IntVar(&o.maxHeaders, "max-headers", 100, "request header fields accepted (431 beyond)")
	o.maxHeaderSize = 64 << 10
	fs.Var(&o.maxHeaderSize, "max-header-size", "largest request head accepted (431 beyond): bytes, or with K, M, G; a uwsgi packet is at most 64K by its format")
	return fs
}

// parse parses args into fs, then fills every flag of all (fs itself, or a
// superset) not given on the command line from BRIDGE_<FLAG> (e.g.
// BRIDGE_WORKERS, BRIDGE_MAX_BODY_SIZE), then from the --config file.
func parse(fs, all *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError(fmt.Sprintf("unexpected argument %q", fs.Arg(0)))
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var err error
	all.VisitAll(func(f *flag.Flag) {
		if set[f.Name] || err != nil {
			return
		}
		env := "BRIDGE_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v, ok := os.LookupEnv(env); ok {
			if e := f.Value.Set(v); e != nil {
				err = usageError(fmt.Sprintf("$%s=%q: %v", env, v, e))
			}
			set[f.Name] = true
		}
	})
	if path := all.Lookup("config").Value.String(); err == nil && path != "" {
		err = loadConfig(all, path, set)
	}
	return err
}

// usageErr is a command-line mistake: exit code 2.
type usageErr struct{ msg string }

func (e *usageErr) Error() string { return e.msg }

func usageError(msg string) error { return &usageErr{msg} }

// ExitCode maps an error from Run to the process exit code: 2 for usage
// mistakes, 1 for everything else.
func ExitCode(err error) int {
	var ue *usageErr
	if errors.As(err, &ue) || errors.Is(err, flag.ErrHelp) {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	return 1
}
