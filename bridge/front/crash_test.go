package front_test

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
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

// G15, docs/design.md "Retries": a request whose runner died before
// answering is tried once more on another worker when its method is
// idempotent: a PUT (its 300 KiB body read again from the start) succeeds
// there. The same request as a POST is not (the app may have seen it), so
// it gets 502.
func TestRunnerLostRetriesOnlyIdempotent(t *testing.T) {
	s := startStack(t, 0)
	body := bytes.Repeat([]byte("0123456789abcdef"), 300<<10/16)
	sum := sha256.Sum256(body)
	want := fmt.Sprintf("survived %d %x", len(body), sum)
	send := func(method string) (int, string) {
		mark := filepath.Join(t.TempDir(), "mark")
		req, err := http.NewRequest(method, s.httpURL+"/crash-once?mark="+url.QueryEscape(mark), bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp.StatusCode, string(b)
	}
	if code, got := send("PUT"); code != 200 || got != want {
		t.Fatalf("PUT after a runner death: got %d %q, want 200 %q from the retry", code, got, want)
	}
	if n := strings.Count(s.logs.String(), "retrying on another slot"); n != 1 {
		t.Fatalf("%d retries logged, want 1", n)
	}
	if code, got := send("POST"); code != 502 {
		t.Fatalf("POST after a runner death: got %d %q, want 502 (never run twice)", code, got)
	}
	if n := strings.Count(s.logs.String(), "retrying on another slot"); n != 1 {
		t.Fatalf("%d retries logged after the POST, want still 1", n)
	}
}
