// Package testrunner is a runner written in Go, for tests: a test binary
// re-executes itself as a go-plugin runner (see Main), so fronts, dispatch and
// supervision are tested without any interpreter. Its "app" answers by path.
package testrunner

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-plugin"

	bridgev1 "bridge/proto/bridge/v1"
	"bridge/runners"
)

// EnvVar makes a test binary act as the runner when set to "1".
const EnvVar = "BRIDGE_TEST_RUNNER"

// FailEnvVar makes the runner log its value as an error and exit 1 at start.
const FailEnvVar = "BRIDGE_TEST_RUNNER_FAIL"

// FailFileEnvVar names a file: while it exists, runners fail at start the
// same way (a test can break reloads and restarts of a running bridge).
const FailFileEnvVar = "BRIDGE_TEST_RUNNER_FAIL_FILE"

// StartDelayEnvVar, a Go duration, makes the runner wait that long before
// its handshake (a slow app load: reloads that take a while).
const StartDelayEnvVar = "BRIDGE_TEST_RUNNER_START_DELAY"

// stderr is the runner's real stderr, which bridge reads (go-plugin points
// os.Stderr at a pipe of its own once serving).
var stderr = os.Stderr

// Main serves the runner and exits if the process was started as one; call
// it first in TestMain.
func Main() {
	if os.Getenv(EnvVar) != "1" {
		return
	}
	msg := os.Getenv(FailEnvVar)
	if path := os.Getenv(FailFileEnvVar); path != "" {
		if b, err := os.ReadFile(path); err == nil {
			msg = strings.TrimSpace(string(b))
		}
	}
	if msg != "" {
		// Fail the way a shim does when the app cannot load.
		b, _ := json.Marshal(map[string]string{"level": "error", "message": msg})
		os.Stderr.Write(append(b, '\n'))
		os.Exit(1)
	}
	if d, err := time.ParseDuration(os.Getenv(StartDelayEnvVar)); err == nil {
		time.Sleep(d)
	}
	// go-plugin points os.Stderr at a pipe of its own once serving: keep
	// the real one, which bridge reads.
	stderr = os.Stderr
	dumpStacksOnSignal(stderr)
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig: runners.Handshake,
		Plugins:         map[string]plugin.Plugin{runners.PluginName: &runners.RunnerPlugin{Impl: &server{}}},
		GRPCServer:      plugin.DefaultGRPCServer,
	})
	os.Exit(0)
}

type server struct {
	bridgev1.UnimplementedRunnerServer
}

// running holds the ids of requests inside handle, for Describe.
var running sync.Map

// hoard keeps what /grow allocated, so the memory stays resident.
var (
	hoardMu sync.Mutex
	hoard   [][]byte
)

// dumpStacksOnSignal logs every goroutine's stack on SIGUSR1, as the runner
// contract asks of a runner that ignored a cancellation.
func dumpStacksOnSignal(stderr *os.File) {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGUSR1)
	go func() {
		for range ch {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			b, _ := json.Marshal(map[string]string{"level": "warn", "message": "stack dump (SIGUSR1)", "traceback": string(buf)})
			stderr.Write(append(b, '\n'))
		}
	}()
}

func (s *server) Describe(_ context.Context, _ *bridgev1.DescribeRequest) (*bridgev1.DescribeResponse, error) {
	threads, _ := strconv.Atoi(os.Getenv("BRIDGE_THREADS"))
	d := &bridgev1.DescribeResponse{
		Language: "go", LanguageVersion: "test", Interface: "test/1",
		App: "testrunner", Threads: uint32(threads), Pid: int32(os.Getpid()), Server: "testrunner",
	}
	running.Range(func(k, _ any) bool {
		d.Running = append(d.Running, k.(string))
		return true
	})
	return d, nil
}

// Slot serves requests one after another, as the contract says.
func (s *server) Slot(st bridgev1.Runner_SlotServer) error {
	for {
		f, err := st.Recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if f.Head == nil {
			continue // leftover body of an earlier request
		}
		in := &input{st: st, buf: f.Body, end: f.End}
		running.Store(f.Head.RequestId, true)
		err = handle(st, f.Head, in)
		running.Delete(f.Head.RequestId)
		if err != nil {
			return err
		}
		if err := in.drain(); err != nil {
			return err
		}
	}
}

// input reads request body frames on demand.
type input struct {
	st  bridgev1.Runner_SlotServer
	buf []byte
	end bool
}

func (in *input) Read(p []byte) (int, error) {
	for len(in.buf) == 0 {
		if in.end {
			return 0, io.EOF
		}
		f, err := in.st.Recv()
		if err != nil {
			return 0, err
		}
		in.buf, in.end = f.Body, f.End
	}
	n := copy(p, in.buf)
	in.buf = in.buf[n:]
	return n, nil
}

func (in *input) drain() error {
	for !in.end {
		f, err := in.st.Recv()
		if err != nil {
			return err
		}
		in.end = f.End
	}
	return nil
}

func vars(h *bridgev1.RequestHead) map[string]string {
	m := make(map[string]string, len(h.Vars))
	for _, v := range h.Vars {
		m[string(v.Name)] = string(v.Value)
	}
	return m
}

func head(status uint32, kv ...string) *bridgev1.ResponseHead {
	h := &bridgev1.ResponseHead{Status: status}
	for i := 0; i+1 < len(kv); i += 2 {
		h.Headers = append(h.Headers, &bridgev1.Header{Name: []byte(kv[i]), Value: []byte(kv[i+1])})
	}
	return h
}

// handle is the test app. Paths:
//
//	/hello          one frame: 200 "hello world\n"
//	/env, /env/…    the vars as JSON
//	/echo           the request body back, streamed
//	/stream?n=N&ms=M N chunks "chunk i\n", M ms apart, no Content-Length
//	/sleep?ms=M     answers after M ms
//	/error-before   app error before the head (→ 500)
//	/error-after    one chunk, then an app error (→ abort)
//	/hop            a response with hop-by-hop headers (fronts drop them)
//	/bad-header     a header value with CR LF in it (refused: 502)
//	/bad-reason     a reason phrase with CR LF in it (refused: 502)
//	/bad-name       a header name that is not a token (refused: 502)
//	/long?stream=1  Content-Length 5, body "hello world" (cut at 5); with
//	                stream=1 in three frames, the app still sending
//	/short          Content-Length 10, body "short" (aborted)
//	/crash          the runner process exits mid-request (→ 502)
//	/crash-once?mark=F  exits after reading half the body if file F does
//	                not exist (creating it), else answers "survived N
//	                <sha256 of the N body bytes>"
//	/hang?ms=M      answers after M ms, ignoring cancellation (a stuck app)
//	/grow?mb=N      keeps N more MiB resident, answers "grew"
//	/big?mb=N       N MiB of body in 64 KiB chunks (a client that does not
//	                read it blocks the response)
func handle(st bridgev1.Runner_SlotServer, h *bridgev1.RequestHead, in *input) error {
	v := vars(h)
	q := query(v["QUERY_STRING"])
	path := v["PATH_INFO"]
	if strings.HasPrefix(path, "/env/") {
		path = "/env"
	}
	switch path {
	case "/hello":
		return st.Send(&bridgev1.ResponseFrame{Head: head(200, "Content-Type", "text/plain", "Content-Length", "12"), Body: []byte("hello world\n"), End: true})
	case "/stderr":
		// The app writes ?line= to fd 2 as it is, as any app can.
		if _, err := stderr.Write([]byte(q["line"] + "\n")); err != nil {
			return err
		}
		return st.Send(&bridgev1.ResponseFrame{Head: head(200, "Content-Type", "text/plain"), Body: []byte("written\n"), End: true})
	case "/env":
		b, _ := json.Marshal(map[string]any{"vars": v, "id": h.RequestId, "scheme": h.UrlScheme, "content_length": h.ContentLength})
		return st.Send(&bridgev1.ResponseFrame{Head: head(200, "Content-Type", "application/json"), Body: b, End: true})
	case "/echo":
		buf := make([]byte, 64<<10)
		first := true
		for {
			n, err := in.Read(buf)
			if n > 0 {
				f := &bridgev1.ResponseFrame{Body: append([]byte(nil), buf[:n]...)}
				if first {
					f.Head, first = head(200, "Content-Type", "application/octet-stream"), false
				}
				if serr := st.Send(f); serr != nil {
					return serr
				}
			}
			if err == io.EOF {
				break
			}
			if err != nil {
				return err
			}
		}
		if first {
			return st.Send(&bridgev1.ResponseFrame{Head: head(200, "Content-Length", "0"), End: true})
		}
		return st.Send(&bridgev1.ResponseFrame{End: true})
	case "/stream":
		n, ms := atoi(q["n"], 3), atoi(q["ms"], 0)
		for i := 0; i < n; i++ {
			f := &bridgev1.ResponseFrame{Body: []byte(fmt.Sprintf("chunk %d\n", i))}
			if i == 0 {
				f.Head = head(200, "Content-Type", "text/plain")
			}
			if err := st.Send(f); err != nil {
				return err
			}
			time.Sleep(time.Duration(ms) * time.Millisecond)
		}
		return st.Send(&bridgev1.ResponseFrame{End: true})
	case "/sleep":
		select {
		case <-time.After(time.Duration(atoi(q["ms"], 1000)) * time.Millisecond):
		case <-st.Context().Done():
			return st.Context().Err()
		}
		return st.Send(&bridgev1.ResponseFrame{Head: head(200, "Content-Length", "5"), Body: []byte("slept"), End: true})
	case "/error-before":
		return st.Send(&bridgev1.ResponseFrame{Error: &bridgev1.Error{Kind: "app", Message: "boom secret-detail", Traceback: "Traceback: boom"}, End: true})
	case "/error-after":
		if err := st.Send(&bridgev1.ResponseFrame{Head: head(200), Body: []byte("partial")}); err != nil {
			return err
		}
		return st.Send(&bridgev1.ResponseFrame{Error: &bridgev1.Error{Kind: "app", Message: "late boom"}, End: true, Abort: true})
	case "/hop":
		return st.Send(&bridgev1.ResponseFrame{Head: head(200, "Connection", "close", "X-Ok", "1", "Transfer-Encoding", "chunked", "Content-Length", "2"), Body: []byte("ok"), End: true})
	case "/bad-header":
		// What an exec: runner that does not check its app could send.
		return st.Send(&bridgev1.ResponseFrame{Head: head(200, "Content-Type", "text/plain", "X-Bad", "a\r\nSet-Cookie: x=1", "Content-Length", "2"), Body: []byte("ok"), End: true})
	case "/bad-reason":
		return st.Send(&bridgev1.ResponseFrame{Head: &bridgev1.ResponseHead{Status: 200, Reason: "OK\r\nSet-Cookie: x=1", Headers: head(200, "Content-Length", "2").Headers}, Body: []byte("ok"), End: true})
	case "/bad-name":
		return st.Send(&bridgev1.ResponseFrame{Head: head(200, "Set-Cookie: x=1\r\nX-Bad", "v", "Content-Length", "2"), Body: []byte("ok"), End: true})
	case "/long":
		if q["stream"] == "" {
			return st.Send(&bridgev1.ResponseFrame{Head: head(200, "Content-Length", "5"), Body: []byte("hello world"), End: true})
		}
		for i, chunk := range []string{"hel", "lo wo", "rld"} {
			f := &bridgev1.ResponseFrame{Body: []byte(chunk)}
			if i == 0 {
				f.Head = head(200, "Content-Length", "5")
			}
			if err := st.Send(f); err != nil {
				return nil // cancelled: bridge has what it declared
			}
			time.Sleep(20 * time.Millisecond)
		}
		return st.Send(&bridgev1.ResponseFrame{End: true})
	case "/short":
		return st.Send(&bridgev1.ResponseFrame{Head: head(200, "Content-Length", "10"), Body: []byte("short"), End: true})
	case "/lower":
		// Rack 3 spells every header name in lower case.
		return st.Send(&bridgev1.ResponseFrame{Head: head(200, "content-type", "text/x-kit", "content-length", "2", "x-ok", "1"), Body: []byte("ok"), End: true})
	case "/big":
		chunk := make([]byte, 64<<10)
		for i := 0; i < atoi(q["mb"], 1)*16; i++ {
			f := &bridgev1.ResponseFrame{Body: chunk}
			if i == 0 {
				f.Head = head(200, "Content-Type", "application/octet-stream")
			}
			if err := st.Send(f); err != nil {
				return err
			}
		}
		return st.Send(&bridgev1.ResponseFrame{End: true})
	case "/crash":
		os.Exit(3)
	case "/crash-once":
		// Dies the first time (no file at ?mark= yet) once it has read
		// half the body, answers after with a hash of the body it read: a
		// request that killed its runner, tried again on another.
		half := atoi(v["CONTENT_LENGTH"], 0) / 2
		if _, err := os.Stat(q["mark"]); err != nil {
			io.ReadFull(in, make([]byte, half))
			os.WriteFile(q["mark"], nil, 0o600)
			os.Exit(3)
		}
		h := sha256.New()
		n, _ := io.Copy(h, in)
		out := fmt.Sprintf("survived %d %x", n, h.Sum(nil))
		return st.Send(&bridgev1.ResponseFrame{Head: head(200, "Content-Length", strconv.Itoa(len(out))), Body: []byte(out), End: true})
	case "/hang":
		time.Sleep(time.Duration(atoi(q["ms"], 1000)) * time.Millisecond)
		return st.Send(&bridgev1.ResponseFrame{Head: head(200, "Content-Length", "4"), Body: []byte("hung"), End: true})
	case "/grow":
		b := make([]byte, atoi(q["mb"], 1)<<20)
		for i := 0; i < len(b); i += 4096 {
			b[i] = 1 // touch every page: resident, not just reserved
		}
		hoardMu.Lock()
		hoard = append(hoard, b)
		hoardMu.Unlock()
		return st.Send(&bridgev1.ResponseFrame{Head: head(200, "Content-Length", "4"), Body: []byte("grew"), End: true})
	}
	return st.Send(&bridgev1.ResponseFrame{Head: head(404, "Content-Length", "10"), Body: []byte("not found\n"), End: true})
}
