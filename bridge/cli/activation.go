package cli

import (
	"fmt"
	"net"
	"os"
	"strings"

	"github.com/rs/zerolog"

	"bridge/bridge/front"
)

// Socket activation and readiness notification: what bridge serve does
// when systemd starts it (deploy/systemd/README.md).

// trustedInherited applies trustedUwsgiAddr to a uwsgi listener systemd
// passed (fd:NAME): its address is only known once it is open.
func trustedInherited(lns []listener) error {
	for _, l := range lns {
		if l.kind != "uwsgi" || !strings.HasPrefix(l.addr, front.FDPrefix) {
			continue
		}
		if a, ok := l.ln.Addr().(*net.TCPAddr); ok {
			if err := trustedUwsgiAddr(a.String()); err != nil {
				return fmt.Errorf("--uwsgi %s is %s: %w", l.addr, a, err)
			}
		}
	}
	return nil
}

// warnUnusedSockets logs the sockets systemd passed that no listener took,
// once every listener is open: a FileDescriptorName= that matches no
// --uwsgi/--http/--admin fd:NAME is probably a typo on one side.
func warnUnusedSockets(log zerolog.Logger, in *front.Inherited) {
	if unused := in.Unused(); len(unused) > 0 {
		log.Warn().Strs("sockets", unused).
			Msg("systemd passed sockets that no listener uses (closed): name them in --uwsgi, --http or --admin as fd:NAME, or remove them from the .socket unit")
	}
}

// notifier sends sd_notify(3) messages to systemd's NOTIFY_SOCKET (a
// Type=notify service); without it, it does nothing. The variable is unset
// so runners do not inherit it.
type notifier struct{ addr string }

func newNotifier() *notifier {
	n := &notifier{addr: os.Getenv("NOTIFY_SOCKET")}
	os.Unsetenv("NOTIFY_SOCKET")
	return n
}

// notify sends one message such as "READY=1"; a failure is logged, never
// fatal (systemd then times the start out and says so itself).
func (n *notifier) notify(log zerolog.Logger, msg string) {
	if n.addr == "" {
		return
	}
	addr := n.addr
	if addr[0] == '@' { // abstract namespace
		addr = "\x00" + addr[1:]
	}
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: addr, Net: "unixgram"})
	if err == nil {
		_, err = c.Write([]byte(msg))
		c.Close()
	}
	if err != nil {
		log.Warn().Err(err).Str("notify_socket", n.addr).Str("message", msg).Msg("could not notify systemd")
	}
}
