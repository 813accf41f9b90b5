package front_test

import (
	"io"
	"net"
	"testing"

	"bridge/bridge/uwsgi"
)

// BenchmarkUwsgiHello is one request through the uwsgi front, dispatch and
// a gRPC slot to the Go test runner, as nginx sends it (a golden packet, a
// fresh unix connection per request). Its CPU and allocation profiles are
// bridge's own share of a request (the runner is another process):
//
//	go test ./bridge/front -run '^$' -bench UwsgiHello -benchmem -cpuprofile /tmp/front.prof
func BenchmarkUwsgiHello(b *testing.B) {
	s := startStack(b, 0)
	p, _ := golden(b, "get_plain")
	setVar(p, "PATH_INFO", "/hello")
	pkt, err := uwsgi.AppendPacket(nil, p)
	if err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 4096)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		c, err := net.Dial("unix", s.uwsgiSock)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := c.Write(pkt); err != nil {
			b.Fatal(err)
		}
		n, err := io.ReadAtLeast(c, buf, 1)
		for err == nil {
			var m int
			m, err = c.Read(buf[n:])
			n += m
		}
		c.Close()
		if n < 20 || string(buf[:12]) != "HTTP/1.1 200" {
			b.Fatalf("response %q", buf[:n])
		}
	}
}
