package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"bridge/bridge/front"
)

const healthcheckUsage = `Usage: bridge healthcheck [--admin ADDR | --config FILE] [--probe-timeout D]

GET /readyz on bridge's admin listener: exit 0 if bridge is ready (a worker
is ready and bridge is not draining), else exit 1 with the reason on one
line of stderr. It is the images' HEALTHCHECK (they carry no curl):

  HEALTHCHECK CMD ["bridge", "healthcheck"]

The admin address is --admin, else $BRIDGE_ADMIN, else the admin key of the
--config file (or $BRIDGE_CONFIG) that bridge serve reads: the same
settings, the same address. host:port and unix:/path are reached as given;
an unspecified host (":9000", "0.0.0.0:9000") is asked on loopback. A
socket passed by systemd (fd:NAME) has no address to reach: give --admin.

Flags:
`

// healthcheck probes /readyz on the admin address serve would listen on.
// Every failure, a usage mistake included, exits 1: container runtimes read
// 1 as unhealthy and reserve 2.
func healthcheck(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o := &options{}
	fs := flag.NewFlagSet("healthcheck", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.config, "config", "", "YAML file of bridge serve's settings: its admin key is the address probed")
	fs.Var(&o.admin, "admin", "admin address to probe: host:port or unix:/path (as bridge serve --admin)")
	timeout := fs.Duration("probe-timeout", 3*time.Second, "how long the probe may take in all, connecting included (command line only)")
	fs.Usage = func() {
		fmt.Fprint(stderr, healthcheckUsage)
		fs.PrintDefaults()
	}
	// The environment and the config file are read as serve reads them
	// (every serve key is accepted, only admin is used).
	if err := parse(fs, newFlagSet("healthcheck", o, true, io.Discard), args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("healthcheck: %s", err.Error())
	}
	if len(o.admin) == 0 {
		return errors.New("healthcheck: no admin address: give --admin ADDR, BRIDGE_ADMIN, or a --config file with an admin key (bridge serve must run with --admin)")
	}
	if *timeout <= 0 {
		return fmt.Errorf("healthcheck: --probe-timeout %v: must be more than 0", *timeout)
	}
	addr := o.admin[len(o.admin)-1]
	if err := probeReady(ctx, addr, *timeout); err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	fmt.Fprintln(stdout, "ready")
	return nil
}

// probeReady GETs /readyz at an admin address and fails unless it is 200.
func probeReady(ctx context.Context, addr string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	network, dialAddr, target, err := probeTarget(addr)
	if err != nil {
		return err
	}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, dialAddr)
		},
		DisableKeepAlives: true,
		Proxy:             nil, // never through $HTTP_PROXY
	}
	defer tr.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return fmt.Errorf("--admin %s: %w", addr, err)
	}
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		if ue := (*url.Error)(nil); errors.As(err, &ue) {
			err = ue.Err // drop "Get URL:", the address is said below
		}
		if errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("GET /readyz on %s: no answer within %v", addr, timeout)
		}
		return fmt.Errorf("GET /readyz on %s: %v (is bridge serve running with --admin %s?)", addr, err, addr)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode != http.StatusOK {
		reason := strings.Join(strings.Fields(string(body)), " ")
		return fmt.Errorf("not ready: GET /readyz on %s: %s: %s", addr, resp.Status, reason)
	}
	return nil
}

// probeTarget is where to connect for an admin listener address, and the
// URL to ask for.
func probeTarget(addr string) (network, dialAddr, target string, err error) {
	if path, ok := strings.CutPrefix(addr, "unix:"); ok {
		if path == "" {
			return "", "", "", fmt.Errorf("--admin %s: empty socket path", addr)
		}
		return "unix", path, "http://bridge-admin/readyz", nil
	}
	if strings.HasPrefix(addr, front.FDPrefix) {
		return "", "", "", fmt.Errorf("--admin %s is a socket systemd passes to bridge serve: healthcheck cannot reach it by name; give --admin with its address (ListenStream= of the .socket unit)", addr)
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil || port == "" {
		return "", "", "", fmt.Errorf("--admin %q: want host:port or unix:/path", addr)
	}
	switch ip := net.ParseIP(host); {
	case host == "" || (ip != nil && ip.Equal(net.IPv4zero)):
		host = "127.0.0.1"
	case ip != nil && ip.Equal(net.IPv6unspecified):
		host = "::1"
	}
	hp := net.JoinHostPort(host, port)
	return "tcp", hp, "http://" + hp + "/readyz", nil
}
