package front_test

import (
	"net"
	"testing"
	"time"

	"bridge/bridge/front"
)

// --max-connections: with two open, a third connection is handed to the
// refuser (which answers 503 in the front's protocol) instead of being
// served; once one closes, the next is served again; a double Close frees
// one place only; Close ends a waiting Accept.
func TestLimitListener(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := make(chan net.Conn, 4)
	ln := front.LimitListener(inner, 2, func(c net.Conn) { refused <- c })
	accepted := make(chan net.Conn, 4)
	acceptErr := make(chan error, 1)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				acceptErr <- err
				return
			}
			accepted <- c
		}
	}()
	dial := func() net.Conn {
		c, err := net.Dial("tcp", inner.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	want := func(ch chan net.Conn, what string) net.Conn {
		t.Helper()
		select {
		case c := <-ch:
			return c
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: nothing after 5 s", what)
			return nil
		}
	}
	var open []net.Conn
	for range 2 {
		dial()
		open = append(open, want(accepted, "first two connections accepted"))
	}
	dial()
	want(refused, "third connection refused").Close()
	open[0].Close()
	open[0].Close() // a second Close must not free a second place
	dial()
	open = append(open, want(accepted, "a connection accepted after one closed"))
	dial()
	want(refused, "a double Close freed two places: fourth connection")
	select {
	case c := <-accepted:
		t.Fatalf("connection %v accepted past the limit", c.RemoteAddr())
	default:
	}
	ln.Close()
	select {
	case err := <-acceptErr:
		if err == nil {
			t.Fatal("Accept after Close returned no error")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Accept still blocked after Close")
	}
	for _, c := range open {
		c.Close()
	}
}
