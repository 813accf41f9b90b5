package e2e

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestPodRollingRestart plays a rolling restart of deploy/k8s's Deployment
// on this host, under load, and counts failed requests: there must be none.
//
// Each pod runs nginx and bridge as the manifests configure them (commands,
// ConfigMap files, environment, users and fsGroup when the test is root;
// only ports and paths are templated: see templatingFor) and as the kubelet
// starts and stops them (startPod, simPod.stop). A round-robin TCP proxy
// stands for the Service: a pod gets new connections while it is in the
// proxy's endpoints. The rollout is what maxSurge 1 / maxUnavailable 0
// does: start the new pod, wait until it is ready, add it to the
// endpoints, terminate the old one and take it out of the endpoints a
// moment later (endpointLag); then once more, to a third pod.
func TestPodRollingRestart(t *testing.T) {
	trackSources()
	nginxPath(t) // fails, naming the package, if nginx is missing
	m := loadPodManifests(t)
	img := newPodImage(t, m)
	if !img.asRoot {
		t.Log("not root: both containers run as the test's user, socket-group is the test's group")
	}
	svc := newServiceProxy(t)

	a := startPod(t, img, "a")
	svc.setEndpoints(a.nginxAddr)
	load := startPodLoad(t, svc.addr, 3)

	roll := func(old *simPod, name string) *simPod {
		next := startPod(t, img, name)
		svc.setEndpoints(old.nginxAddr, next.nginxAddr)
		load.waitServed(t, 20) // traffic reaches both
		// The endpoint removal and the kubelet's preStop start together;
		// the proxies learn of the removal a little later, which is what
		// the preStop sleep is for.
		removed := make(chan struct{})
		go func() {
			time.Sleep(endpointLag)
			svc.setEndpoints(next.nginxAddr)
			close(removed)
		}()
		took := old.stop(t)
		<-removed
		t.Logf("pod %s stopped in %v (kubelet order: preStop, SIGTERM nginx, SIGTERM bridge)", old.name, took.Round(time.Millisecond))
		return next
	}
	b := roll(a, "b")
	c := roll(b, "c")
	load.waitServed(t, 20)
	ok, failed, firstErrs := load.stop()
	took := c.stop(t)
	t.Logf("pod %s stopped in %v", c.name, took.Round(time.Millisecond))

	var perPod []string
	for _, p := range []*simPod{a, b, c} {
		n := svc.count(p.nginxAddr)
		perPod = append(perPod, fmt.Sprintf("%s %d", p.name, n))
		if n == 0 {
			t.Errorf("pod %s got no connection", p.name)
		}
	}
	t.Logf("requests through the rolling restarts: %d answered 200, %d failed; connections per pod: %s", ok, failed, strings.Join(perPod, ", "))
	if failed != 0 {
		t.Errorf("%d requests failed during the rolling restart, first: %s", failed, strings.Join(firstErrs, "; "))
	}
}

// endpointLag is how long after a pod's termination starts the Service
// still sends it new connections (kube-proxy and ingresses learn of the
// endpoint removal late); shorter than the preStop sleep.
const endpointLag = 1 * time.Second

// serviceProxy is the Service: new connections go round-robin to the
// current endpoints; connections it already has stay where they are, as
// with kube-proxy.
type serviceProxy struct {
	addr string
	ln   net.Listener
	mu   sync.Mutex
	eps  []string
	next int
	hits map[string]int
	wg   sync.WaitGroup
}

func newServiceProxy(t *testing.T) *serviceProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &serviceProxy{addr: ln.Addr().String(), ln: ln, hits: map[string]int{}}
	s.wg.Add(1)
	go s.serve()
	t.Cleanup(func() {
		ln.Close()
		s.wg.Wait()
	})
	return s
}

func (s *serviceProxy) setEndpoints(eps ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.eps = eps
}

func (s *serviceProxy) pick() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.eps) == 0 {
		return ""
	}
	ep := s.eps[s.next%len(s.eps)]
	s.next++
	s.hits[ep]++
	return ep
}

func (s *serviceProxy) count(ep string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.hits[ep]
}

func (s *serviceProxy) serve() {
	defer s.wg.Done()
	for {
		client, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer client.Close()
			ep := s.pick()
			if ep == "" {
				return // no endpoints: the client sees the connection closed
			}
			backend, err := net.DialTimeout("tcp", ep, 5*time.Second)
			if err != nil {
				return
			}
			defer backend.Close()
			done := make(chan struct{})
			go func() {
				_, _ = io.Copy(backend, client)
				backend.(*net.TCPConn).CloseWrite()
				close(done)
			}()
			_, _ = io.Copy(client, backend)
			client.(*net.TCPConn).CloseWrite()
			<-done
		}()
	}
}

// podLoad is clients sending GET / through the Service without pause, each
// request on a new connection (kube-proxy balances connections).
type podLoad struct {
	stopc  chan struct{}
	wg     sync.WaitGroup
	ok     atomic.Int64
	failed atomic.Int64
	mu     sync.Mutex
	errs   []string
}

func startPodLoad(t *testing.T, addr string, clients int) *podLoad {
	t.Helper()
	l := &podLoad{stopc: make(chan struct{})}
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	for i := range clients {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for n := 0; ; n++ {
				select {
				case <-l.stopc:
					return
				default:
				}
				if err := l.one(client, addr, fmt.Sprintf("/?client=%d&n=%d", i, n)); err != nil {
					l.failed.Add(1)
					l.mu.Lock()
					if len(l.errs) < 5 {
						l.errs = append(l.errs, err.Error())
					}
					l.mu.Unlock()
				} else {
					l.ok.Add(1)
				}
			}
		}()
	}
	t.Cleanup(func() { l.stop() })
	return l
}

// one request: 200 with the demo app's greeting, or an error.
func (l *podLoad) one(client *http.Client, addr, path string) error {
	resp, err := client.Get("http://" + addr + path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	switch {
	case err != nil:
		return fmt.Errorf("GET %s: reading the body: %v", path, err)
	case resp.StatusCode != http.StatusOK:
		return fmt.Errorf("GET %s: %s", path, resp.Status)
	case !strings.HasPrefix(string(body), "Hello from bridge!"):
		return fmt.Errorf("GET %s: body %q", path, body)
	}
	return nil
}

// waitServed waits until n more requests have been answered (bounded: a
// stall is a hang, reported as a failure).
func (l *podLoad) waitServed(t *testing.T, n int64) {
	t.Helper()
	want := l.ok.Load() + n
	deadline := time.Now().Add(20 * time.Second)
	for l.ok.Load() < want {
		if time.Now().After(deadline) {
			t.Fatalf("load stalled: %d answered, %d failed", l.ok.Load(), l.failed.Load())
		}
		time.Sleep(pollEvery)
	}
}

func (l *podLoad) stop() (ok, failed int64, errs []string) {
	select {
	case <-l.stopc:
	default:
		close(l.stopc)
	}
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.ok.Load(), l.failed.Load(), append([]string(nil), l.errs...)
}
