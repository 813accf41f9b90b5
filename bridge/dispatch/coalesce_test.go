package dispatch

import (
	"bytes"
	"errors"
	"sync"
	"testing"
	"time"

	bridgev1 "bridge/proto/bridge/v1"
)

// gateWriter records each Write; while gate is set, a Write waits for it.
type gateWriter struct {
	mu     sync.Mutex
	writes [][]byte
	gate   chan struct{}
	in     chan struct{} // a Write has started
	err    error
}

func (w *gateWriter) WriteHead(int, string, []*bridgev1.Header) error { return nil }
func (w *gateWriter) SendFile(string, int64, int64) error             { return nil }
func (w *gateWriter) Write(p []byte) error {
	if w.in != nil {
		w.in <- struct{}{}
	}
	if w.gate != nil {
		<-w.gate
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.writes = append(w.writes, append([]byte(nil), p...))
	return w.err
}

// Chunks that arrive while a write is under way leave together in the next
// write, in order; nothing waits for chunks that have not arrived.
func TestCoalescerJoinsChunksQueuedDuringAWrite(t *testing.T) {
	w := &gateWriter{gate: make(chan struct{}), in: make(chan struct{}, 10)}
	c := newCoalescer(w)
	defer c.stop()
	chunk := []byte("a")
	if err := c.add(chunk); err != nil {
		t.Fatal(err)
	}
	chunk[0] = 'x' // add copied it: the frame's buffer is reused by gRPC
	<-w.in         // the first write is under way
	for _, s := range []string{"b", "c", "d"} {
		if err := c.add([]byte(s)); err != nil {
			t.Fatal(err)
		}
	}
	close(w.gate)
	if err := c.drain(); err != nil {
		t.Fatal(err)
	}
	if len(w.writes) != 2 || string(w.writes[0]) != "a" || string(w.writes[1]) != "bcd" {
		t.Fatalf("writes %q, want [a bcd]", w.writes)
	}
	// A chunk after an idle spell is written at once, on its own.
	if err := c.add([]byte("e")); err != nil {
		t.Fatal(err)
	}
	if err := c.drain(); err != nil {
		t.Fatal(err)
	}
	if len(w.writes) != 3 || string(w.writes[2]) != "e" {
		t.Fatalf("writes %q, want [a bcd e]", w.writes)
	}
}

// A failed write is reported by the next add and by drain.
func TestCoalescerReportsWriteError(t *testing.T) {
	gone := errors.New("gone")
	w := &gateWriter{err: gone}
	c := newCoalescer(w)
	defer c.stop()
	if err := c.add([]byte("a")); err != nil {
		t.Fatal(err)
	}
	if err := c.drain(); !errors.Is(err, gone) {
		t.Fatalf("drain: %v, want %v", err, gone)
	}
	if err := c.add([]byte("b")); !errors.Is(err, gone) {
		t.Fatalf("add after a failed write: %v", err)
	}
}

// A client that does not read holds the receiver back once coalesceLimit
// bytes wait (gRPC flow control then slows the app), and nothing is lost.
func TestCoalescerBoundsWhatItHolds(t *testing.T) {
	w := &gateWriter{gate: make(chan struct{}), in: make(chan struct{}, 1000)}
	c := newCoalescer(w)
	defer c.stop()
	chunk := bytes.Repeat([]byte("z"), 1024)
	var want int
	added := make(chan int)
	go func() {
		n := 0
		for i := 0; i < 2*coalesceLimit/len(chunk); i++ {
			if err := c.add(chunk); err != nil {
				break
			}
			n += len(chunk)
			select {
			case added <- n:
			default:
			}
		}
		close(added)
	}()
	<-w.in
	time.Sleep(50 * time.Millisecond)
	c.mu.Lock()
	held := len(*c.buf)
	c.mu.Unlock()
	if held > coalesceLimit+len(chunk) {
		t.Fatalf("holds %d bytes, limit %d", held, coalesceLimit)
	}
	close(w.gate)
	for n := range added {
		want = n
	}
	if err := c.drain(); err != nil {
		t.Fatal(err)
	}
	got := 0
	for _, b := range w.writes {
		got += len(b)
	}
	if want = 2 * coalesceLimit / len(chunk) * len(chunk); got != want {
		t.Fatalf("wrote %d bytes, want %d", got, want)
	}
}

// stop with chunks pending waits for the write under way and ends.
func TestCoalescerStop(t *testing.T) {
	w := &gateWriter{gate: make(chan struct{}), in: make(chan struct{}, 10)}
	c := newCoalescer(w)
	_ = c.add([]byte("a"))
	<-w.in
	_ = c.add([]byte("b"))
	done := make(chan struct{})
	go func() { c.stop(); close(done) }()
	select {
	case <-done:
		t.Fatal("stop returned while a write was under way")
	case <-time.After(20 * time.Millisecond):
	}
	close(w.gate)
	<-done
	if len(w.writes) != 1 {
		t.Fatalf("writes %q, want only the one under way", w.writes)
	}
}
