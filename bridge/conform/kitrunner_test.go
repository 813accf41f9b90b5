package conform

import (
	"context"
	"fmt"
	"io"
	"net/url"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/go-plugin"

	bridgev1 "bridge/proto/bridge/v1"
	"bridge/runners"
)

// A small kit app runner in Go, so the kit is tested without interpreters:
// the test binary re-executes itself as a runner (kitRunnerEnv=1). With
// kitBreakEnv set it breaks one rule on purpose, and the matching check
// must fail: a check that cannot fail proves nothing.
const (
	kitRunnerEnv = "BRIDGE_CONFORM_TEST_RUNNER"
	kitBreakEnv  = "BRIDGE_CONFORM_TEST_BREAK"
)

// serveKitRunner serves the Go kit runner if this process is one.
func serveKitRunner() {
	if os.Getenv(kitRunnerEnv) != "1" {
		return
	}
	// As a runner does with an app's import-time print: to stderr.
	fmt.Fprintln(os.Stderr, "KIT-IMPORT-PRINT")
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig: runners.Handshake,
		Plugins: map[string]plugin.Plugin{runners.PluginName: &runners.RunnerPlugin{
			Impl: &kitRunner{brk: os.Getenv(kitBreakEnv), stdout: os.Stdout, stderr: os.Stderr},
		}},
		GRPCServer: plugin.DefaultGRPCServer,
	})
	os.Exit(0)
}

type kitRunner struct {
	bridgev1.UnimplementedRunnerServer
	brk    string
	stdout *os.File // the real ones, kept before go-plugin redirects them
	stderr *os.File

	mu      sync.Mutex
	running map[string]bool
	bodies  map[string]int
	closes  map[string]int
	calls   map[string]int
}

func (r *kitRunner) Describe(context.Context, *bridgev1.DescribeRequest) (*bridgev1.DescribeResponse, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	d := &bridgev1.DescribeResponse{Language: "go", Interface: "kit/1", App: "kit", Threads: 1, Pid: int32(os.Getpid())}
	for id := range r.running {
		if r.brk != "no-running" {
			d.Running = append(d.Running, id)
		}
	}
	return d, nil
}

func (r *kitRunner) count(m *map[string]int, id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if *m == nil {
		*m = map[string]int{}
	}
	(*m)[id]++
}

func (r *kitRunner) Slot(st bridgev1.Runner_SlotServer) error {
	for {
		f, err := st.Recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if f.Head == nil {
			continue
		}
		id := f.Head.RequestId
		r.mu.Lock()
		if r.running == nil {
			r.running = map[string]bool{}
		}
		r.running[id] = true
		r.mu.Unlock()
		r.count(&r.calls, id)
		err = r.serve(st, f.Head)
		r.mu.Lock()
		delete(r.running, id)
		r.mu.Unlock()
		if err != nil {
			return err
		}
		for !f.End { // drop the rest of the body (C11)
			if f, err = st.Recv(); err != nil {
				return err
			}
		}
	}
}

func (r *kitRunner) serve(st bridgev1.Runner_SlotServer, h *bridgev1.RequestHead) error {
	var path, query string
	for _, v := range h.Vars {
		switch string(v.Name) {
		case "PATH_INFO":
			path = string(v.Value)
		case "QUERY_STRING":
			query = string(v.Value)
		}
	}
	q, _ := url.ParseQuery(query)
	ok := &bridgev1.ResponseHead{Status: 200, Reason: "OK"}
	one := func(body string) error {
		if r.brk == "two-frames" {
			if err := st.Send(&bridgev1.ResponseFrame{Head: ok, Body: []byte(body)}); err != nil {
				return err
			}
			return st.Send(&bridgev1.ResponseFrame{End: true})
		}
		return st.Send(&bridgev1.ResponseFrame{Head: ok, Body: []byte(body), End: true})
	}
	switch path {
	case "/hello":
		return one("hello")
	case "/print":
		if r.brk == "stdout" {
			fmt.Fprintln(r.stdout, "KIT-STDOUT")
		}
		fmt.Fprintln(r.stderr, "KIT-STDOUT")
		return one("printed")
	case "/deferred":
		if r.brk == "early-head" {
			if err := st.Send(&bridgev1.ResponseFrame{Head: ok}); err != nil {
				return err
			}
			ok = nil
		}
		ms, _ := strconv.Atoi(q.Get("ms"))
		time.Sleep(time.Duration(ms) * time.Millisecond)
		return st.Send(&bridgev1.ResponseFrame{Head: ok, Body: []byte("late"), End: true})
	case "/error-after":
		if err := st.Send(&bridgev1.ResponseFrame{Head: ok, Body: []byte("partial")}); err != nil {
			return err
		}
		f := &bridgev1.ResponseFrame{Error: &bridgev1.Error{Kind: "app", Message: "KIT-SECRET error-after"}, End: true, Abort: true}
		if r.brk == "error-text" {
			f.Body = []byte("KIT-SECRET error-after")
		}
		return st.Send(f)
	case "/stream":
		return r.stream(st, h.RequestId, ok)
	case "/sleep":
		ms, _ := strconv.Atoi(q.Get("ms"))
		time.Sleep(time.Duration(ms) * time.Millisecond)
		return one("slept")
	case "/stats":
		r.mu.Lock()
		id := q.Get("id")
		body := fmt.Sprintf(`{"calls":%d,"bodies":%d,"closes":%d,"max_active":1}`, r.calls[id], r.bodies[id], r.closes[id])
		r.mu.Unlock()
		return one(body)
	}
	return st.Send(&bridgev1.ResponseFrame{Head: &bridgev1.ResponseHead{Status: 404}, Body: []byte("not found"), End: true})
}

// stream sends chunks until the stream is cancelled, then closes its body
// (counts the close) unless told to forget.
func (r *kitRunner) stream(st bridgev1.Runner_SlotServer, id string, head *bridgev1.ResponseHead) error {
	r.count(&r.bodies, id)
	defer func() {
		if r.brk != "no-close" {
			r.count(&r.closes, id)
		}
	}()
	for i := 1; ; i++ {
		f := &bridgev1.ResponseFrame{Head: head, Body: []byte(fmt.Sprintf("chunk-%d\n", i))}
		head = nil
		if err := st.Send(f); err != nil {
			return err
		}
		select {
		case <-st.Context().Done():
			return st.Context().Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}
