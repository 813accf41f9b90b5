package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// The attacks. Each attacker goroutine runs one attack at a time against
// one bridge, cycling through its modes, with a pause between attacks, until
// the soak's end; every connection lasts at most o.hold.
const (
	attackSlowRead   = "slow_read"   // modes: none (read nothing), 1Bps (read the head, then 1 byte/s)
	attackSlowUpload = "slow_upload" // modes: head, body, body64k, stall (below)
	attackFlood      = "header_flood"
)

var (
	slowReadModes   = []string{"none", "1Bps"}
	slowUploadModes = []string{"head", "body", "body64k", "stall"}
)

// rejectStatus is what counts as a refusal: bridge's documented 408, 413
// and 431, and 400 (nginx's "Request Header Or Cookie Too Large").
func rejectStatus(s int) bool { return s == 400 || s == 408 || s == 413 || s == 431 }

func classify(status int) string {
	switch {
	case status >= 200 && status < 300:
		return "served"
	case rejectStatus(status):
		return "rejected"
	default:
		return "other"
	}
}

// attacker runs one kind of attack against t until ctx ends.
func attacker(ctx context.Context, o *options, rec *recorder, t *target, kind string, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 0xa77ac))
	for i := 0; ctx.Err() == nil; i++ {
		var (
			k   rowKey
			out outcome
		)
		switch kind {
		case attackSlowRead:
			mode := slowReadModes[i%len(slowReadModes)]
			k = rowKey{t.name, kind + "/" + mode, "direct"}
			out = slowRead(ctx, t.httpAddr, mode, o.slowKiB, o.hold)
		case attackSlowUpload:
			mode := slowUploadModes[i%len(slowUploadModes)]
			k = rowKey{t.name, kind + "/" + mode, "direct"}
			out = slowUpload(ctx, t.httpAddr, mode, o.hold)
		case attackFlood:
			// direct: 200 to 4,000 headers of 24 bytes (up to ~96 KB, past Go's
			// 64 KiB head limit); through nginx: 200 to 1,000 short ones, which
			// fit nginx's 32 KB of header buffers and reach bridge as uwsgi vars
			if i%2 == 0 {
				k = rowKey{t.name, kind, "direct"}
				out = headerFlood(ctx, t.httpAddr, 200+rng.IntN(3801), false, o.hold)
			} else {
				k = rowKey{t.name, kind, "nginx"}
				out = headerFlood(ctx, t.nginxAddr, 200+rng.IntN(801), true, o.hold)
			}
		}
		if ctx.Err() != nil && out.Kind == "held" {
			return // cut short by the soak's end: not a result
		}
		rec.attack(k, out)
		pause := o.attackPause
		if kind == attackFlood {
			pause = o.floodPause
		}
		sleepCtx(ctx, pause/2+time.Duration(rng.Int64N(int64(pause)+1)))
	}
}

// dialSmall connects with a 4 KiB receive buffer (set before connect, so
// the window is small from the start) for slow readers.
func dialSmall(addr string, rcvbuf int) (net.Conn, error) {
	d := net.Dialer{Timeout: 5 * time.Second, Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, rcvbuf)
		})
		if err != nil {
			return err
		}
		return serr
	}}
	return d.Dial("tcp", addr)
}

// hangUpOnStop makes c's reads and writes fail once ctx ends (the soak's
// stop); the func it returns closes c.
func hangUpOnStop(ctx context.Context, c net.Conn) func() {
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Now()) })
	return func() {
		stop()
		c.Close()
	}
}

// slowRead asks for a big response (kib KiB) and then reads nothing
// (mode none) or the head and then 1 byte a second (mode 1Bps) for hold.
func slowRead(ctx context.Context, addr, mode string, kib int, hold time.Duration) outcome {
	start := time.Now()
	c, err := dialSmall(addr, 4096)
	if err != nil {
		return outcome{Kind: "error"}
	}
	defer hangUpOnStop(ctx, c)()
	id := fmt.Sprintf("soak-attack-slowread-%d", reqSeq.Add(1))
	if _, err := fmt.Fprintf(c, "GET /big?kib=%d HTTP/1.1\r\nHost: soak\r\nX-Request-Id: %s\r\n\r\n", kib, id); err != nil {
		return outcome{Kind: "cut", Held: time.Since(start)}
	}
	end := start.Add(hold)
	held := func(kind string, status int) outcome {
		return outcome{Kind: kind, Status: status, Held: time.Since(start)}
	}
	if mode == "none" {
		sleepCtx(ctx, time.Until(end))
		// Did bridge give up on us? Read what is buffered: a closed or reset
		// connection ends within it; an open one keeps sending or goes quiet.
		var head []byte
		total := 0
		buf := make([]byte, 64<<10)
		_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
		for total < 8<<20 {
			n, err := c.Read(buf)
			if len(head) < 64 {
				head = append(head, buf[:min(n, 64)]...)
			}
			total += n
			if err != nil {
				if st := statusOf(head); st != 0 && st != 200 {
					return held(classify(st), st)
				}
				if isTimeout(err) {
					return held("held", 0)
				}
				return held("cut", 0)
			}
		}
		return held("held", 0)
	}
	// 1Bps: the head at once (byte by byte, so nothing more is read), then a
	// byte a second
	_ = c.SetReadDeadline(time.Now().Add(hold))
	st, err := readHead(c)
	if err != nil {
		if isTimeout(err) {
			return held("held", 0)
		}
		return held("cut", 0)
	}
	if st != 200 {
		return held(classify(st), st)
	}
	one := make([]byte, 1)
	for time.Now().Before(end) && ctx.Err() == nil {
		sleepCtx(ctx, time.Second)
		_ = c.SetReadDeadline(time.Now().Add(time.Second))
		if _, err := c.Read(one); err != nil && !isTimeout(err) {
			return held("cut", 200)
		}
	}
	return held("held", 200)
}

// slowUpload posts to /upload slowly, for hold at most:
//
//	head     the request line, then a header one byte a second, never ending
//	body     a head with Content-Length 1 MiB, then the body at 1 byte/s
//	body64k  the head and 80 KiB at once (past the 64 KiB bridge reads
//	         before dispatch), then 1 byte/s
//	stall    the head and 80 KiB at once, then nothing
func slowUpload(ctx context.Context, addr, mode string, hold time.Duration) outcome {
	start := time.Now()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return outcome{Kind: "error"}
	}
	defer hangUpOnStop(ctx, c)()
	type answer struct {
		status int
		err    error
	}
	answered := make(chan answer, 1)
	_ = c.SetReadDeadline(start.Add(hold + 2*time.Second))
	go func() {
		st, err := readHead(c)
		answered <- answer{st, err}
	}()
	id := fmt.Sprintf("soak-attack-slowupload-%d", reqSeq.Add(1))
	head := "POST /upload HTTP/1.1\r\nHost: soak\r\nX-Request-Id: " + id + "\r\n"
	var first, drip []byte
	switch mode {
	case "head":
		first, drip = []byte(head+"X-Slow: "), bytes.Repeat([]byte("a"), 1<<20)
	default:
		first = []byte(head + "Content-Type: application/octet-stream\r\nContent-Length: 1048576\r\n\r\n")
		if mode != "body" {
			first = append(first, bytes.Repeat([]byte("u"), 80<<10)...)
		}
		if mode != "stall" {
			drip = bytes.Repeat([]byte("d"), 1<<20)
		}
	}
	result := func(a answer) outcome {
		o := outcome{Held: time.Since(start)}
		switch {
		case a.err == nil:
			o.Kind, o.Status = classify(a.status), a.status
		case isTimeout(a.err):
			o.Kind = "held"
		default:
			o.Kind = "cut"
		}
		return o
	}
	_ = c.SetWriteDeadline(start.Add(hold))
	_, werr := c.Write(first)
	end := start.Add(hold)
	for i := 0; werr == nil && time.Now().Before(end); i++ {
		select {
		case a := <-answered:
			return result(a)
		case <-ctx.Done():
			return outcome{Kind: "held", Held: time.Since(start)}
		case <-time.After(time.Second):
		}
		if i < len(drip) {
			_, werr = c.Write(drip[i : i+1])
		}
	}
	if werr != nil { // the server closed: give its answer a moment to arrive
		select {
		case a := <-answered:
			return result(a)
		case <-time.After(2 * time.Second):
			return outcome{Kind: "cut", Held: time.Since(start)}
		}
	}
	select {
	case a := <-answered:
		return result(a)
	default:
		return outcome{Kind: "held", Held: time.Since(start)}
	}
}

// headerFlood sends GET /hello with n extra header fields and reads the
// answer's status.
func headerFlood(ctx context.Context, addr string, n int, short bool, hold time.Duration) outcome {
	start := time.Now()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return outcome{Kind: "error"}
	}
	defer hangUpOnStop(ctx, c)()
	var b strings.Builder
	fmt.Fprintf(&b, "GET /hello HTTP/1.1\r\nHost: soak\r\nX-Request-Id: soak-attack-flood-%d\r\n", reqSeq.Add(1))
	for i := 0; i < n; i++ {
		if short {
			fmt.Fprintf(&b, "X-F%d: 1\r\n", i)
		} else {
			fmt.Fprintf(&b, "X-Flood-%05d: abcdefgh\r\n", i)
		}
	}
	b.WriteString("Connection: close\r\n\r\n")
	_ = c.SetDeadline(start.Add(hold))
	go func() { _, _ = io.WriteString(c, b.String()) }()
	st, err := readHead(c)
	o := outcome{Held: time.Since(start)}
	switch {
	case err == nil:
		o.Kind, o.Status = classify(st), st
	case isTimeout(err):
		o.Kind = "held"
	default:
		o.Kind = "cut"
	}
	return o
}

// readHead reads a response head byte by byte (so no body byte is taken
// from the socket) and returns its status.
func readHead(c net.Conn) (int, error) {
	var head []byte
	one := make([]byte, 1)
	for len(head) < 16<<10 {
		if _, err := c.Read(one); err != nil {
			if st := statusOf(head); st != 0 && bytes.Contains(head, []byte("\r\n")) {
				return st, nil // a status line, then the server closed
			}
			return 0, err
		}
		head = append(head, one[0])
		if bytes.HasSuffix(head, []byte("\r\n\r\n")) {
			break
		}
	}
	st := statusOf(head)
	if st == 0 {
		return 0, fmt.Errorf("not an HTTP response: %.40q", head)
	}
	return st, nil
}

// statusOf parses "HTTP/1.x NNN" at the start of b; 0 if it is not there.
func statusOf(b []byte) int {
	if len(b) < 12 || !bytes.HasPrefix(b, []byte("HTTP/1.")) {
		return 0
	}
	st, err := strconv.Atoi(string(b[9:12]))
	if err != nil {
		return 0
	}
	return st
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
