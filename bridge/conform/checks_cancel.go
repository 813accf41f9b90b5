package conform

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	bridgev1 "bridge/proto/bridge/v1"
)

// inFlight is a request running on its own Slot stream in the background.
type inFlight struct {
	cancel context.CancelFunc
	done   chan struct{}
	rep    *reply
}

// begin sends r on a new stream of p and reads the answer in the background.
// each may stop the read early (see receive).
func (k *kit) begin(p *proc, id string, r req, timeout time.Duration, each func(*bridgev1.ResponseFrame) bool) (*inFlight, error) {
	ctx, cancel := context.WithTimeout(k.ctx, timeout)
	s, err := p.RPC().Slot(ctx)
	if err != nil {
		cancel()
		return nil, err
	}
	f := &inFlight{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(f.done)
		f.rep, _ = exchange(ctx, s, id, r, each)
	}()
	return f, nil
}

// wait waits for the answer and releases the stream.
func (f *inFlight) wait() *reply {
	<-f.done
	f.cancel()
	return f.rep
}

func checkRunning(k *kit) error {
	p, err := k.runner()
	if err != nil {
		return err
	}
	id := k.id("running")
	f, err := k.begin(p, id, req{method: "GET", path: "/sleep?ms=1500"}, 10*time.Second, nil)
	if err != nil {
		return err
	}
	// Poll Describe while the app sleeps. A runner that runs the app on its
	// only thread answers once the call is over, which the contract allows
	// (bridge then counts a cancelled request in it as stuck); but an answer
	// that comes while the request is in the app must list it. The first
	// 500 ms are left for the request to reach the app (more than enough
	// even on a loaded machine), the last 200 for its answer to travel.
	start := time.Now()
	var missed []string
	for seen := false; !seen; {
		info, err := k.describe(p)
		select {
		case <-f.done:
			seen = true
			continue
		default:
		}
		if err != nil {
			f.wait()
			return fmt.Errorf("C15: Describe during an app call: %w", err)
		}
		seen = slices.Contains(info.Running, id)
		if at := time.Since(start); !seen && at > 500*time.Millisecond && at < 1300*time.Millisecond {
			missed = append(missed, fmt.Sprintf("at %v: %v", time.Since(start).Round(time.Millisecond), info.Running))
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := wantBody(f.wait(), "slept"); err != nil {
		return err
	}
	if len(missed) > 0 {
		return fmt.Errorf("C15: request %s was in the app (GET /sleep?ms=1500) but Describe.running did not list it: %s", id, strings.Join(missed, "; "))
	}
	if err := k.waitGone(p, id, time.Second); err != nil {
		return fmt.Errorf("C15: a finished request must leave running: %w", err)
	}
	return nil
}

// slots is the number of Slot streams the runner says it takes at once.
func (k *kit) slots(p *proc) int {
	return max(int(p.Info().Slots), int(p.Info().Threads))
}

func checkPipelinedOrder(k *kit) error {
	p, err := k.runner()
	if err != nil {
		return err
	}
	threads := int(p.Info().Threads)
	if k.slots(p) <= threads {
		return notApplicable("the runner offers no slots beyond its threads (Describe.slots), so bridge does not pipeline onto it")
	}
	if _, err := k.stats(p, "reset&reset=1"); err != nil {
		return err
	}
	n := k.slots(p)
	var mu sync.Mutex
	var order []int
	var flights []*inFlight
	for i := range n {
		f, err := k.begin(p, k.id("pipe"), req{method: "GET", path: "/sleep?ms=150"}, 20*time.Second, nil)
		if err != nil {
			return err
		}
		flights = append(flights, f)
		go func() {
			<-f.done
			mu.Lock()
			order = append(order, i)
			mu.Unlock()
		}()
		time.Sleep(30 * time.Millisecond) // arrival order is the order to keep
	}
	for _, f := range flights {
		if err := wantBody(f.wait(), "slept"); err != nil {
			return fmt.Errorf("C16: %d requests on %d slots: %w", n, n, err)
		}
	}
	st, err := k.stats(p, "x")
	if err != nil {
		return err
	}
	if st.MaxActive > threads {
		return fmt.Errorf("C16: %d app calls ran at once with %d thread(s): slots past the threads must wait their turn", st.MaxActive, threads)
	}
	time.Sleep(10 * time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	if threads == 1 {
		for i, v := range order {
			if v != i {
				return fmt.Errorf("C16: requests waiting for the one thread finished in order %v, want arrival order", order)
			}
		}
	}
	return nil
}

func checkSlotsLimit(k *kit) error {
	p, err := k.runner()
	if err != nil {
		return err
	}
	n := k.slots(p)
	var flights []*inFlight
	for range n + 1 {
		f, err := k.begin(p, k.id("limit"), req{method: "GET", path: "/sleep?ms=100"}, 20*time.Second, nil)
		if err != nil {
			return err
		}
		flights = append(flights, f)
	}
	refused := 0
	for i, f := range flights {
		rep := f.wait()
		if i == n && rep.err != nil && len(rep.frames) == 0 {
			// Past the slots it offered, a runner may refuse the stream
			// with a gRPC status instead of queueing it.
			refused++
			continue
		}
		if err := wantBody(rep, "slept"); err != nil {
			return fmt.Errorf("C17: stream %d of %d (the runner offers %d): %w", i+1, n+1, n, err)
		}
	}
	if err := wantBody(k.get(p, k.id("after-limit"), "/hello"), "hello"); err != nil {
		return fmt.Errorf("C17: the runner must keep serving after more streams than slots: %w", err)
	}
	return nil
}

// settled waits until the app has closed every body it returned for id
// and the id has left running.
func (k *kit) settled(p *proc, id string) error {
	deadline := time.Now().Add(2 * time.Second)
	for {
		st, err := k.stats(p, id)
		if err != nil {
			return err
		}
		if st.Closes > st.Bodies || st.Bodies > 1 {
			return fmt.Errorf("C14: request %s: %d bodies, closed %d times; a body must be closed exactly once", id, st.Bodies, st.Closes)
		}
		if st.Closes == st.Bodies {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("C14: request %s was cancelled, but the app's body was not closed within 2 s (%d bodies, %d closes)", id, st.Bodies, st.Closes)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := k.waitGone(p, id, 2*time.Second); err != nil {
		return fmt.Errorf("C14: %w", err)
	}
	return wantBody(k.get(p, k.id("after-cancel"), "/hello"), "hello")
}

func checkCancelIdle(k *kit) error {
	p, err := k.runner()
	if err != nil {
		return err
	}
	// A stream cancelled before any frame, and one cancelled right after
	// its head: the app may or may not have been called, but whatever it
	// returned is closed once.
	ctx, cancel := context.WithCancel(k.ctx)
	if _, err := p.RPC().Slot(ctx); err != nil {
		cancel()
		return err
	}
	time.Sleep(20 * time.Millisecond)
	cancel()
	id := k.id("cancel-head")
	f, err := k.begin(p, id, req{method: "GET", path: "/stream?n=0&ms=20"}, 10*time.Second, nil)
	if err != nil {
		return err
	}
	f.cancel()
	f.wait()
	return k.settled(p, id)
}

func checkCancelQueued(k *kit) error {
	p, err := k.runner()
	if err != nil {
		return err
	}
	threads := int(p.Info().Threads)
	if k.slots(p) <= threads {
		return notApplicable("the runner offers no slots beyond its threads, so no request waits inside it")
	}
	var busy []*inFlight
	for range threads {
		f, err := k.begin(p, k.id("busy"), req{method: "GET", path: "/sleep?ms=500"}, 10*time.Second, nil)
		if err != nil {
			return err
		}
		busy = append(busy, f)
	}
	time.Sleep(100 * time.Millisecond)
	id := k.id("queued")
	q, err := k.begin(p, id, req{method: "GET", path: "/hello"}, 10*time.Second, nil)
	if err != nil {
		return err
	}
	time.Sleep(100 * time.Millisecond)
	q.cancel()
	q.wait()
	for _, f := range busy {
		if err := wantBody(f.wait(), "slept"); err != nil {
			return err
		}
	}
	st, err := k.stats(p, id)
	if err != nil {
		return err
	}
	if st.Calls != 0 {
		return fmt.Errorf("C16: request %s was cancelled while it waited for a thread, yet the app was called %d time(s)", id, st.Calls)
	}
	return k.settled(p, id)
}

func checkCancelMidBody(k *kit) error {
	p, err := k.runner()
	if err != nil {
		return err
	}
	id := k.id("cancel-body")
	r := req{method: "POST", path: "/echo-stream?read=4096", body: pattern(64 << 10), piece: 4096, open: true, length: 1 << 20}
	f, err := k.begin(p, id, r, 10*time.Second, func(*bridgev1.ResponseFrame) bool { return false })
	if err != nil {
		return err
	}
	select {
	case <-f.done:
	case <-time.After(300 * time.Millisecond):
	}
	f.cancel()
	if rep := f.wait(); rep.last() != nil && rep.last().End {
		return broken("C11: the response ended although the request body was incomplete", rep)
	}
	return k.settled(p, id)
}

func checkCancelMidStream(k *kit) error {
	p, err := k.runner()
	if err != nil {
		return err
	}
	id := k.id("cancel-stream")
	chunks := 0
	f, err := k.begin(p, id, req{method: "GET", path: "/stream?n=0&ms=20"}, 10*time.Second,
		func(fr *bridgev1.ResponseFrame) bool {
			if len(fr.Body) > 0 {
				chunks++
			}
			return chunks < 2
		})
	if err != nil {
		return err
	}
	<-f.done
	f.cancel()
	if rep := f.wait(); chunks < 2 {
		return broken("C12: want at least two chunks of the endless stream before cancelling it", rep)
	}
	st, err := k.stats(p, id)
	if err != nil {
		return err
	}
	if st.Bodies != 1 {
		return fmt.Errorf("C14: the kit app counted %d bodies for the endless stream, want 1", st.Bodies)
	}
	return k.settled(p, id)
}
