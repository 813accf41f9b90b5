package dispatch

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"bridge/bridge/request"
)

func worker(name string, threads int) *Worker {
	return NewWorker(context.Background(), name, nil, nil, threads, threads, zerolog.Nop())
}

func TestPoolPicksLeastLoaded(t *testing.T) {
	p := NewPool(10, time.Second)
	a, b := worker("a", 2), worker("b", 2)
	p.Add(a)
	p.Add(b)
	ctx := context.Background()
	s1, _ := p.Acquire(ctx)
	s2, _ := p.Acquire(ctx)
	if s1.Worker() == s2.Worker() {
		t.Fatalf("two requests on %s while the other worker is idle", s1.Worker().Name)
	}
	p.Release(s1)
	s3, _ := p.Acquire(ctx)
	if s3.Worker() != s1.Worker() {
		t.Fatalf("got %s, want the idle %s", s3.Worker().Name, s1.Worker().Name)
	}
}

func TestPoolQueueFIFOAndHandoff(t *testing.T) {
	p := NewPool(10, 5*time.Second)
	p.Add(worker("a", 1))
	ctx := context.Background()
	held, _ := p.Acquire(ctx)
	got := make(chan int, 2)
	for i := 1; i <= 2; i++ {
		go func() {
			s, err := p.Acquire(ctx)
			if err != nil {
				t.Error(err)
				return
			}
			got <- i
			time.Sleep(20 * time.Millisecond)
			p.Release(s)
		}()
		time.Sleep(30 * time.Millisecond) // queue them in order
	}
	p.Release(held)
	if a, b := <-got, <-got; a != 1 || b != 2 {
		t.Fatalf("served %d then %d, want 1 then 2", a, b)
	}
}

func TestPoolQueueFullAndTimeout(t *testing.T) {
	p := NewPool(1, 50*time.Millisecond)
	p.Add(worker("a", 1))
	ctx := context.Background()
	if _, err := p.Acquire(ctx); err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { _, err := p.Acquire(ctx); errc <- err }()
	time.Sleep(10 * time.Millisecond)
	// The queue holds one waiter: a second one is refused at once.
	if _, err := p.Acquire(ctx); request.StatusOf(err) != http.StatusServiceUnavailable {
		t.Fatalf("full queue: %v", err)
	}
	if err := <-errc; request.StatusOf(err) != http.StatusServiceUnavailable || !errors.Is(err, ErrNoWorkers) {
		t.Fatalf("queue timeout: %v", err)
	}
}

func TestPoolRemovedWorkerGetsNoRequests(t *testing.T) {
	p := NewPool(10, 30*time.Millisecond)
	a := worker("a", 1)
	p.Add(a)
	s, _ := p.Acquire(context.Background())
	p.Remove(a)
	p.Release(s)
	if p.Ready() {
		t.Fatal("pool ready with no worker")
	}
	if _, err := p.Acquire(context.Background()); err == nil {
		t.Fatal("acquired a slot of a removed worker")
	}
	// A worker added later serves the waiting queue.
	b := worker("b", 1)
	done := make(chan *Slot)
	p2 := NewPool(10, time.Second)
	go func() { s, _ := p2.Acquire(context.Background()); done <- s }()
	time.Sleep(10 * time.Millisecond)
	p2.Add(b)
	if s := <-done; s == nil || s.Worker() != b {
		t.Fatal("waiter not served by the new worker")
	}
}

func TestPoolCancelledWaiter(t *testing.T) {
	p := NewPool(10, time.Second)
	p.Add(worker("a", 1))
	held, _ := p.Acquire(context.Background())
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := p.Acquire(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v", err)
	}
	p.Release(held)
	if s, err := p.Acquire(context.Background()); err != nil || s == nil {
		t.Fatalf("slot lost after a waiter gave up: %v", err)
	}
}

func TestPoolSuspendAndResume(t *testing.T) {
	p := NewPool(10, 50*time.Millisecond)
	a, b := worker("a", 1), worker("b", 1)
	p.Add(a)
	p.Add(b)
	a.broken() // as after a failed delivery
	for range 3 {
		s, err := p.Acquire(context.Background())
		if err != nil || s.Worker() != b {
			t.Fatalf("got %v %v, want b while a is suspended", s, err)
		}
		p.Release(s)
	}
	held, _ := p.Acquire(context.Background()) // b busy
	if _, err := p.Acquire(context.Background()); err == nil {
		t.Fatal("a suspended worker's slot was handed out")
	}
	p.Resume(a)
	if s, err := p.Acquire(context.Background()); err != nil || s.Worker() != a {
		t.Fatalf("after resume: %v %v", s, err)
	}
	p.Release(held)
}

// Pipelining: past its threads, a worker holds more requests only while its
// oldest one is young; every worker's free threads are used first.
func TestPoolPipelinesBehindYoungRequests(t *testing.T) {
	p := NewPool(10, time.Second)
	a := NewWorker(context.Background(), "a", nil, nil, 1, 3, zerolog.Nop())
	b := NewWorker(context.Background(), "b", nil, nil, 1, 3, zerolog.Nop())
	p.Add(a)
	p.Add(b)
	ctx := context.Background()
	per := map[*Worker]int{}
	for range 6 {
		s, err := p.Acquire(ctx)
		if err != nil {
			t.Fatalf("request %d: %v", len(per), err)
		}
		per[s.Worker()]++
	}
	if per[a] != 3 || per[b] != 3 {
		t.Fatalf("a holds %d, b %d; want 3 each (1 thread + 2 pipelined)", per[a], per[b])
	}
	if _, err := p.Acquire(ctx); request.StatusOf(err) != http.StatusServiceUnavailable {
		t.Fatalf("7th request: %v, want a queue timeout: every slot is taken", err)
	}
}

func TestPoolNoPipelineBehindOldRequest(t *testing.T) {
	p := NewPool(10, 5*time.Second)
	a := NewWorker(context.Background(), "a", nil, nil, 1, 4, zerolog.Nop())
	p.Add(a)
	ctx := context.Background()
	slow, _ := p.Acquire(ctx)
	time.Sleep(pipelineMaxAge + 10*time.Millisecond)
	got := make(chan *Slot, 1)
	go func() {
		s, err := p.Acquire(ctx)
		if err != nil {
			t.Error(err)
		}
		got <- s
	}()
	select {
	case s := <-got:
		t.Fatalf("got slot %d behind a request running for over %v", s.index, pipelineMaxAge)
	case <-time.After(100 * time.Millisecond):
	}
	if n := p.Waiting(); n != 1 {
		t.Fatalf("%d requests waiting in bridge's queue, want 1", n)
	}
	p.Release(slow)
	select {
	case s := <-got:
		p.Release(s)
	case <-time.After(2 * time.Second):
		t.Fatal("the waiting request got no slot after the old one finished")
	}
}

// With no pipeline (slots == threads) nothing waits inside a runner.
func TestPoolNoPipeline(t *testing.T) {
	p := NewPool(10, 50*time.Millisecond)
	p.Add(worker("a", 1))
	ctx := context.Background()
	if _, err := p.Acquire(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Acquire(ctx); request.StatusOf(err) != http.StatusServiceUnavailable {
		t.Fatalf("second request: %v, want 503 after the queue timeout", err)
	}
}
