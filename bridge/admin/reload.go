package admin

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
)

// Coalesce returns a Reloader that never runs two reloads of r at once nor
// queues one per caller. A call while no reload runs starts one; calls that
// arrive while one runs all wait for the single reload that starts right
// after it (it will load the code and read the settings as they are now,
// which the running one may not), and share its outcome. So N reloads asked for at once start at most
// two generations. SIGHUP and POST /reload both go through the one
// Coalesce value serve makes.
func Coalesce(r Reloader) *Reloads {
	return &Reloads{r: r}
}

// Reloads is Coalesce's Reloader.
type Reloads struct {
	r Reloader

	mu      sync.Mutex
	running bool
	next    *reloadRun // the reload that runs after the running one, if asked for
}

// reloadRun is one reload of r and the callers waiting for it.
type reloadRun struct {
	ctx     context.Context
	done    chan struct{}
	waiters int // callers sharing it (tests read it)
	gen     int
	err     error
}

// Reload starts a reload or joins the next one, and waits for its outcome
// or for ctx to end (the reload goes on). The context of the caller that
// asked first is the reload's.
func (c *Reloads) Reload(ctx context.Context) (int, error) {
	c.mu.Lock()
	var run *reloadRun
	if c.running {
		if c.next == nil {
			c.next = &reloadRun{ctx: ctx, done: make(chan struct{})}
		}
		run = c.next
	} else {
		c.running = true
		run = &reloadRun{ctx: ctx, done: make(chan struct{})}
		go c.loop(run)
	}
	run.waiters++
	c.mu.Unlock()
	select {
	case <-run.done:
		return run.gen, run.err
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// loop runs reloads one after another while callers ask for more.
func (c *Reloads) loop(run *reloadRun) {
	for run != nil {
		run.gen, run.err = c.r.Reload(run.ctx)
		close(run.done)
		c.mu.Lock()
		run, c.next = c.next, nil
		if run == nil {
			c.running = false
		}
		c.mu.Unlock()
	}
}

// ReadToken reads the admin token from path (--admin-token-file): the
// file's content without surrounding whitespace. It must be a file that
// only its owner may read or write (chmod 600 or 400), hold one token of
// printable ASCII with no spaces, and not be empty.
func ReadToken(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("--admin-token-file: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", fmt.Errorf("--admin-token-file: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return "", fmt.Errorf("--admin-token-file %s: not a regular file", path)
	}
	if perm := fi.Mode().Perm(); perm&0o066 != 0 {
		return "", fmt.Errorf("--admin-token-file %s: mode %04o lets group or others read or write it; make it readable by bridge's user only (chmod 600)", path, perm)
	}
	b, err := io.ReadAll(io.LimitReader(f, 4096+1))
	if err != nil {
		return "", fmt.Errorf("--admin-token-file: %w", err)
	}
	if len(b) > 4096 {
		return "", fmt.Errorf("--admin-token-file %s: longer than 4 KiB: want one token", path)
	}
	token := strings.TrimSpace(string(b))
	if token == "" {
		return "", fmt.Errorf("--admin-token-file %s: empty: want a token (e.g. from 'openssl rand -hex 32')", path)
	}
	for _, c := range []byte(token) {
		if c <= ' ' || c > '~' {
			return "", fmt.Errorf("--admin-token-file %s: the token must be one word of printable ASCII (it travels in an HTTP header)", path)
		}
	}
	return token, nil
}
