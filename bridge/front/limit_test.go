package front_test

import (
	"net"
	"testing"
	"time"

	"bridge/bridge/front"
)

// --max-connections: the third connection is not accepted while two are
// open, and is as soon as one closes; Close unblocks a waiting Accept.
func TestLimitListener(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := front.LimitListener(inner, 2)
	accepted := make(chan net.Conn, 3)
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
	for range 3 {
		c, err := net.Dial("tcp", inner.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	var open []net.Conn
	for range 2 {
		select {
		case c := <-accepted:
			open = append(open, c)
		case <-time.After(5 * time.Second):
			t.Fatal("first two connections not accepted")
		}
	}
	select {
	case <-accepted:
		t.Fatal("a third connection was accepted past the limit of 2")
	case <-time.After(200 * time.Millisecond):
	}
	open[0].Close()
	open[0].Close() // a second Close must not free a second place
	select {
	case c := <-accepted:
		open = append(open, c)
	case <-time.After(5 * time.Second):
		t.Fatal("third connection not accepted after one closed")
	}
	// Two open again (one of them closed twice): a fourth must still wait.
	c4, err := net.Dial("tcp", inner.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c4.Close()
	select {
	case <-accepted:
		t.Fatal("a double Close freed two places")
	case <-time.After(200 * time.Millisecond):
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
