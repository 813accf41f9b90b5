package conform

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
)

// check is one rule of the contract, tested one way. IDs names the items it
// covers: C items of runners/CONTRACT.md, G items of docs/conformance.md
// (docs/coverage reads these literals to build the coverage table).
type check struct {
	Name string
	IDs  string
	Run  func(*kit) error
}

// checks run in this order: those that share one runner first, then those
// that need a runner of their own because they end it.
var checks = []check{
	{Name: "handshake", IDs: "C1", Run: checkHandshake},
	{Name: "health", IDs: "C4", Run: checkHealth},
	{Name: "stdio", IDs: "C5", Run: checkStdio},
	{Name: "describe", IDs: "C6", Run: checkDescribe},
	{Name: "request-id", IDs: "G19", Run: checkRequestID},
	{Name: "small-exchange", IDs: "C7 G1", Run: checkSmallExchange},
	{Name: "slot-reuse", IDs: "C8 C11", Run: checkSlotReuse},
	{Name: "deferred-head", IDs: "C9 G1", Run: checkDeferredHead},
	{Name: "error-in-call", IDs: "C10 G2", Run: errorBeforeHead("/error-call")},
	{Name: "error-before-output", IDs: "C10 G2", Run: errorBeforeHead("/error-before")},
	{Name: "error-after-head", IDs: "C10 G3", Run: checkErrorAfterHead},
	{Name: "body-0B", IDs: "C11", Run: echo(0, 0, 7)},
	{Name: "body-1B", IDs: "C11", Run: echo(1, 1, 7)},
	{Name: "body-1MiB", IDs: "C11", Run: echo(1<<20, 7919, 4093)},
	{Name: "body-8MiB", IDs: "C11", Run: echo(8<<20, 131071, 65521)},
	{Name: "streaming", IDs: "C12", Run: checkStreaming},
	{Name: "file", IDs: "C13 G23", Run: checkFile},
	{Name: "stdout-hygiene", IDs: "C2 G7 G8", Run: checkStdout},
	{Name: "running", IDs: "C15", Run: checkRunning},
	{Name: "pipelined-order", IDs: "C16", Run: checkPipelinedOrder},
	{Name: "slots-limit", IDs: "C17", Run: checkSlotsLimit},
	{Name: "cancel-idle", IDs: "C14", Run: checkCancelIdle},
	{Name: "cancel-queued", IDs: "C14 C16", Run: checkCancelQueued},
	{Name: "cancel-mid-body", IDs: "C14 G5", Run: checkCancelMidBody},
	{Name: "cancel-mid-stream", IDs: "C14 G4 G5", Run: checkCancelMidStream},
	{Name: "stack-dump", IDs: "C18", Run: checkStackDump},
	{Name: "environment", IDs: "C3", Run: checkEnvironment},
	{Name: "shutdown-drains", IDs: "C19 G25", Run: drains("Shutdown")},
	{Name: "sigterm-drains", IDs: "C20 G25", Run: drains("SIGTERM")},
	{Name: "retire", IDs: "C21", Run: checkRetire},
}

// broken formats a failure: the rule that was broken and what was seen.
func broken(rule string, rep *reply) error {
	if rep == nil {
		return errors.New(rule)
	}
	return fmt.Errorf("%s\n  %s", rule, rep)
}

// okResponse checks that rep is a complete 200 response.
func okResponse(rep *reply) error {
	switch last := rep.last(); {
	case rep.err != nil:
		return broken("no complete response", rep)
	case last == nil || !last.End:
		return broken("the response has no end frame", rep)
	case last.Error != nil || last.Abort:
		return broken("the response failed", rep)
	case rep.head() == nil:
		return broken("the response has no head", rep)
	case rep.head().Status != 200:
		return broken(fmt.Sprintf("status %d, want 200", rep.head().Status), rep)
	}
	return nil
}

// wantBody checks a complete 200 response whose body is want.
func wantBody(rep *reply, want string) error {
	if err := okResponse(rep); err != nil {
		return err
	}
	if got := string(rep.body()); got != want {
		return broken(fmt.Sprintf("body %s, want %q", preview([]byte(got)), want), rep)
	}
	return nil
}

func checkHandshake(k *kit) error {
	p, err := k.runner()
	if err != nil {
		return err
	}
	line, _ := p.Handshake()
	parts := strings.Split(strings.TrimSuffix(line, "\n"), "|")
	if len(parts) == 6 && parts[5] == "" {
		parts = parts[:5] // go-plugin's own servers add an empty TLS field
	}
	switch {
	case !strings.HasSuffix(line, "\n") || strings.Contains(line, "\r"):
		return fmt.Errorf("C1: the handshake line must end with a single \\n: got %q", line)
	case len(parts) != 5:
		return fmt.Errorf("C1: want 5 fields, 1|1|unix|/path.sock|grpc: got %q", line)
	case parts[0] != "1" || parts[1] != "1":
		return fmt.Errorf("C1: core and app protocol versions must be 1|1: got %q", line)
	case parts[2] != "unix" || !strings.HasPrefix(parts[3], "/"):
		return fmt.Errorf("C1: want a unix socket at an absolute path: got %q", line)
	case parts[4] != "grpc":
		return fmt.Errorf("C1: the protocol must be grpc: got %q", line)
	}
	return nil
}

func checkHealth(k *kit) error {
	p, err := k.runner()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(k.ctx, 3*time.Second)
	defer cancel()
	res, err := healthpb.NewHealthClient(p.Conn()).Check(ctx, &healthpb.HealthCheckRequest{Service: "plugin"})
	if err != nil {
		return fmt.Errorf("C4: grpc.health.v1.Health/Check for service \"plugin\": %w", err)
	}
	if res.Status != healthpb.HealthCheckResponse_SERVING {
		return fmt.Errorf("C4: health of service \"plugin\" is %s, want SERVING", res.Status)
	}
	return nil
}

func checkStdio(k *kit) error {
	p, err := k.runner()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(k.ctx, 500*time.Millisecond)
	defer cancel()
	s, err := p.Conn().NewStream(ctx, &grpc.StreamDesc{ServerStreams: true}, "/plugin.GRPCStdio/StreamStdio")
	if err == nil {
		err = s.SendMsg(&emptypb.Empty{})
	}
	if err == nil {
		err = s.CloseSend()
	}
	if err == nil {
		// An empty stream ends at once or stays open until shutdown; both
		// are fine. Data or an error status is not.
		var msg emptypb.Empty
		err = s.RecvMsg(&msg)
		if err == nil {
			return errors.New("C5: plugin.GRPCStdio/StreamStdio sent data; output belongs on stderr, the stream must stay empty")
		}
	}
	if st, _ := status.FromError(err); err == nil || errors.Is(err, context.DeadlineExceeded) ||
		st.Code() == codes.DeadlineExceeded || err.Error() == "EOF" {
		return nil
	}
	return fmt.Errorf("C5: plugin.GRPCStdio/StreamStdio: %w", err)
}

func checkDescribe(k *kit) error {
	p, err := k.runner()
	if err != nil {
		return err
	}
	info, err := k.describe(p)
	if err != nil {
		return fmt.Errorf("C6: Describe: %w", err)
	}
	var bad []string
	if info.Language == "" || info.Interface == "" || info.App == "" {
		bad = append(bad, fmt.Sprintf("language %q, interface %q and app %q must not be empty", info.Language, info.Interface, info.App))
	}
	if int(info.Threads) != k.cfg.Threads {
		bad = append(bad, fmt.Sprintf("threads %d, but BRIDGE_THREADS is %d", info.Threads, k.cfg.Threads))
	}
	if s := int(info.Slots); s != 0 && (s < k.cfg.Threads || s > k.cfg.Slots) {
		bad = append(bad, fmt.Sprintf("slots %d: want 0, or from BRIDGE_THREADS (%d) to BRIDGE_SLOTS (%d)", s, k.cfg.Threads, k.cfg.Slots))
	}
	if int(info.Pid) != p.PID() {
		bad = append(bad, fmt.Sprintf("pid %d, but the runner's process is %d", info.Pid, p.PID()))
	}
	if len(info.Running) != 0 {
		bad = append(bad, fmt.Sprintf("running %v while idle", info.Running))
	}
	if len(bad) > 0 {
		return fmt.Errorf("C6: Describe: %s", strings.Join(bad, "; "))
	}
	return nil
}

func checkRequestID(k *kit) error {
	p, err := k.runner()
	if err != nil {
		return err
	}
	// The /stats call counts itself: the app saw the id only if the runner
	// passed the head's request_id as bridge.request_id.
	id := k.id("self")
	rep := k.get(p, id, "/stats?id="+id)
	if err := okResponse(rep); err != nil {
		return err
	}
	st, err := parseStats(rep.body())
	if err != nil {
		return err
	}
	if st.Calls != 1 {
		return fmt.Errorf("G19: the app counted %d calls for its own request id %s: bridge.request_id does not carry RequestHead.request_id", st.Calls, id)
	}
	return nil
}

func checkSmallExchange(k *kit) error {
	p, err := k.runner()
	if err != nil {
		return err
	}
	rep := k.get(p, k.id("hello"), "/hello")
	if err := wantBody(rep, "hello"); err != nil {
		return err
	}
	if len(rep.frames) != 1 {
		return broken("C7: a one-chunk response must be one frame (head, body and end together)", rep)
	}
	return nil
}

func checkSlotReuse(k *kit) error {
	p, err := k.runner()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(k.ctx, 20*time.Second)
	defer cancel()
	s, err := p.RPC().Slot(ctx)
	if err != nil {
		return err
	}
	big := pattern(6 << 20)
	steps := []struct {
		r    req
		want string
	}{
		{req{method: "GET", path: "/hello"}, "hello"},
		{req{method: "POST", path: "/echo?read=3", body: []byte("0123456789")}, "0123456789"},
		// The app never reads this body: the runner must still take every
		// body frame up to end before the next head (6 MiB is past any
		// flow-control window, so a runner that stops reading stalls).
		{req{method: "POST", path: "/hello", body: big, piece: 65536}, "hello"},
		{req{method: "GET", path: "/hello"}, "hello"},
	}
	for i, st := range steps {
		rep, sent := exchange(ctx, s, k.id(fmt.Sprintf("reuse%d", i)), st.r, nil)
		if err := wantBody(rep, st.want); err != nil {
			return fmt.Errorf("C8: request %d of 5 on one Slot stream: %w", i+1, err)
		}
		select {
		case err := <-sent:
			if err != nil {
				return fmt.Errorf("C11: request %d: sending its body failed: %w", i+1, err)
			}
		case <-ctx.Done():
			return fmt.Errorf("C11: request %d: the runner stopped reading the request body after its response; it must read and drop body frames up to end", i+1)
		}
	}
	return nil
}

func checkDeferredHead(k *kit) error {
	p, err := k.runner()
	if err != nil {
		return err
	}
	rep := k.get(p, k.id("deferred"), "/deferred?ms=300")
	if err := wantBody(rep, "late"); err != nil {
		return err
	}
	first := rep.frames[0]
	if first.at < 250*time.Millisecond {
		return broken("C9: a frame left before the first non-empty chunk (the app yielded an empty chunk, then waited 300 ms)", rep)
	}
	if first.f.Head == nil || len(first.f.Body) == 0 {
		return broken("C9: the head must travel with the first non-empty chunk", rep)
	}
	return nil
}

func errorBeforeHead(path string) func(*kit) error {
	return func(k *kit) error {
		p, err := k.runner()
		if err != nil {
			return err
		}
		rep := k.get(p, k.id("err"), path)
		last := rep.last()
		switch {
		case rep.err != nil:
			return broken("C10: an app error must end the response with an error frame, not end the stream", rep)
		case rep.head() != nil || len(rep.body()) > 0:
			return broken("C10: an app error before any output must send no head and no body (bridge answers 500 itself)", rep)
		case last == nil || last.Error == nil || !last.End:
			return broken("C10: want one frame with error and end", rep)
		}
		if err := wantBody(k.get(p, k.id("after-err"), "/hello"), "hello"); err != nil {
			return fmt.Errorf("C10: the runner must keep serving after an app error: %w", err)
		}
		return nil
	}
}

func checkErrorAfterHead(k *kit) error {
	p, err := k.runner()
	if err != nil {
		return err
	}
	rep := k.get(p, k.id("err-after"), "/error-after")
	last := rep.last()
	switch {
	case rep.err != nil:
		return broken("C10: an app error must end the response with an error frame, not end the stream", rep)
	case bytes.Contains(rep.body(), []byte("KIT-SECRET")):
		return broken("C10: the error text reached the body", rep)
	case rep.head() == nil || rep.head().Status != 200 || string(rep.body()) != "partial":
		return broken("C10: want the head and the chunk `partial` before the error", rep)
	case !last.End || !last.Abort || last.Error == nil:
		return broken("C10: an app error after the head must end with error, end and abort", rep)
	}
	return nil
}
