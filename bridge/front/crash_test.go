package front_test

import (
	"io"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// G15 and docs/design.md "Supervision": a runner SIGKILLed under load costs at most
// the requests it was running (502); requests that had not reached it go to
// the other worker, and the dead one is replaced.
func TestRunnerKilledUnderLoad(t *testing.T) {
	s := startStack(t, 0)
	victim := s.fleet.Info()
	var ok, bad502, other atomic.Int64
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 2000; i++ {
				select {
				case <-stop:
					return
				default:
				}
				resp, err := client.Get(s.httpURL + "/hello")
				if err != nil {
					other.Add(1)
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				switch resp.StatusCode {
				case 200:
					ok.Add(1)
				case 502:
					bad502.Add(1)
				default:
					other.Add(1)
				}
			}
		}()
	}
	time.Sleep(200 * time.Millisecond)
	if err := syscall.Kill(int(victim.Pid), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1500 * time.Millisecond) // long enough for the restart
	close(stop)
	wg.Wait()
	t.Logf("ok %d, 502 %d, other %d", ok.Load(), bad502.Load(), other.Load())
	// The victim had 2 slots: at most 2 requests can have been inside it.
	if bad502.Load() > 2 || other.Load() > 0 {
		t.Fatalf("too many failures: 502 %d, other %d", bad502.Load(), other.Load())
	}
	if ok.Load() < 100 {
		t.Fatalf("only %d requests served", ok.Load())
	}
	if info := s.fleet.Info(); info == nil {
		t.Fatal("no worker running after the crash")
	}
}
