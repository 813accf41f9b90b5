package cli

import (
	"net"
	"strings"
	"testing"
)

// addrListener is a listener that only has an address.
type addrListener struct {
	net.Listener
	addr net.Addr
}

func (l addrListener) Addr() net.Addr { return l.addr }

// A uwsgi socket systemd passed is held to the same rule as --uwsgi
// host:port: unix or loopback only, since the uwsgi front trusts its peer.
func TestTrustedInherited(t *testing.T) {
	lns := func(kind, addr string, a net.Addr) []listener {
		return []listener{{kind: kind, addr: addr, ln: addrListener{addr: a}}}
	}
	wide := &net.TCPAddr{IP: net.ParseIP("10.1.2.3"), Port: 3031}
	if err := trustedInherited(lns("uwsgi", "fd:uwsgi", wide)); err == nil || !strings.Contains(err.Error(), "--uwsgi fd:uwsgi is 10.1.2.3:3031") {
		t.Fatalf("uwsgi on 10.1.2.3: %v, want refused", err)
	}
	for _, ok := range [][]listener{
		lns("uwsgi", "fd:uwsgi", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 3031}),
		lns("uwsgi", "fd:uwsgi", &net.TCPAddr{IP: net.IPv6loopback, Port: 3031}),
		lns("uwsgi", "fd:uwsgi", &net.UnixAddr{Name: "/run/bridge/app.sock", Net: "unix"}),
		lns("http", "fd:http", wide), // HTTP trusts nothing the client says
	} {
		if err := trustedInherited(ok); err != nil {
			t.Errorf("%s on %s: %v, want accepted", ok[0].kind, ok[0].ln.Addr(), err)
		}
	}
	if err := trustedUwsgiAddr("fd:uwsgi"); err != nil {
		t.Errorf("--uwsgi fd:uwsgi refused before the socket is known: %v", err)
	}
}
