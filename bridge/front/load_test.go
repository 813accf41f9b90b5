package front_test

import (
	"fmt"
	"io"
	"sync"
	"sync/atomic"
)

// load is a set of clients sending GET requests until stopped, counting the
// answers that were 200 with the expected body.
type load struct {
	ok, failed atomic.Int64
	mu         sync.Mutex
	firstBad   string
	stop       chan struct{}
	wg         sync.WaitGroup
}

// startLoad starts clients goroutines that each send up to n requests
// (forever if n is 0) to url until finish is called.
func startLoad(url, want string, clients, n int) *load {
	l := &load{stop: make(chan struct{})}
	for range clients {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for i := 0; n == 0 || i < n; i++ {
				select {
				case <-l.stop:
					return
				default:
				}
				l.one(url, want)
			}
		}()
	}
	return l
}

func (l *load) one(url, want string) {
	resp, err := client.Get(url)
	if err != nil {
		l.bad(err.Error())
		return
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(b) != want {
		l.bad(fmt.Sprintf("%d %q", resp.StatusCode, b))
		return
	}
	l.ok.Add(1)
}

func (l *load) bad(what string) {
	l.failed.Add(1)
	l.mu.Lock()
	if l.firstBad == "" {
		l.firstBad = what
	}
	l.mu.Unlock()
}

// wait waits for clients that send a fixed number of requests.
func (l *load) wait() { l.wg.Wait() }

// finish stops the clients and waits for their last requests.
func (l *load) finish() {
	close(l.stop)
	l.wg.Wait()
}

func (l *load) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return fmt.Sprintf("ok %d, failed %d (first: %s)", l.ok.Load(), l.failed.Load(), l.firstBad)
}
