package dispatch

import (
	"errors"
	"sync"

	"bridge/bridge/request"
)

// coalesceMax is the largest body chunk that goes through a coalescer; a
// bigger one is written as it is (after what is pending), without a copy.
const coalesceMax = 16 << 10

// coalesceLimit bounds the bytes a coalescer holds: past it the receiver
// waits for the client, and gRPC flow control slows the app down.
const coalesceLimit = 64 << 10

var coalesceBufs = sync.Pool{New: func() any { b := make([]byte, 0, coalesceLimit+coalesceMax); return &b }}

var errStopped = errors.New("coalescer stopped")

// coalescer writes the body chunks of a streamed response from its own
// goroutine, so that chunks that arrive while a write to the client is under
// way (several ResponseFrames already in gRPC's receive buffer) leave
// together in the next write instead of one write each (docs/design.md,
// "Performance budget": coalescing). Nothing waits for more chunks: a chunk
// is written as soon as the previous write is done.
//
// The receiver copies each chunk in (the frame's body is a slice of gRPC's
// receive buffer, reused at the next Recv) and never touches rw while the
// coalescer may be writing: drain first.
type coalescer struct {
	rw   request.ResponseWriter
	kick chan struct{}

	mu      sync.Mutex
	cond    sync.Cond // writing turned false, or buf shrank
	buf     *[]byte   // chunks not yet handed to rw
	spare   *[]byte
	writing bool // the goroutine owns a kick or is writing
	err     error
}

func newCoalescer(rw request.ResponseWriter) *coalescer {
	c := &coalescer{
		rw:    rw,
		kick:  make(chan struct{}, 1),
		buf:   coalesceBufs.Get().(*[]byte),
		spare: coalesceBufs.Get().(*[]byte),
	}
	c.cond.L = &c.mu
	go c.run()
	return c
}

// add queues a copy of p for the client; it returns the error of an earlier
// write, if any.
func (c *coalescer) add(p []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for len(*c.buf) >= coalesceLimit && c.err == nil {
		c.cond.Wait()
	}
	if c.err != nil {
		return c.err
	}
	*c.buf = append(*c.buf, p...)
	if !c.writing {
		c.writing = true
		c.kick <- struct{}{} // never blocks: only one kick is ever pending
	}
	return nil
}

func (c *coalescer) run() {
	for range c.kick {
		c.mu.Lock()
		for len(*c.buf) > 0 && c.err == nil {
			b := c.buf
			c.buf = c.spare
			c.mu.Unlock()
			err := c.rw.Write(*b)
			*b = (*b)[:0]
			c.mu.Lock()
			c.spare = b
			if err != nil {
				c.err = err
			}
			c.cond.Broadcast()
		}
		c.writing = false
		c.cond.Broadcast()
		c.mu.Unlock()
	}
}

// drain waits until everything added has been written and returns the
// write error, if any. rw is the caller's again until the next add.
func (c *coalescer) drain() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for c.writing {
		c.cond.Wait()
	}
	return c.err
}

// stop drops what is not written yet, waits for a write under way and ends
// the goroutine. The coalescer is unusable afterwards.
func (c *coalescer) stop() {
	c.mu.Lock()
	if c.err == nil {
		c.err = errStopped
	}
	for c.writing {
		c.cond.Wait()
	}
	c.mu.Unlock()
	close(c.kick)
	*c.buf, *c.spare = (*c.buf)[:0], (*c.spare)[:0]
	coalesceBufs.Put(c.buf)
	coalesceBufs.Put(c.spare)
	c.buf, c.spare = nil, nil
}
