package front

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"syscall"
	"time"
)

const (
	defaultReadTimeout = 60 * time.Second
	defaultIdleTimeout = 120 * time.Second
)

// Listen opens addr: "unix:/path" or "host:port". A stale unix socket file
// (nobody accepting on it) is replaced; a live one is "address in use".
func Listen(addr string, mode os.FileMode) (net.Listener, error) {
	if path, ok := strings.CutPrefix(addr, "unix:"); ok {
		if path == "" {
			return nil, fmt.Errorf("listen %s: empty socket path", addr)
		}
		if fi, err := os.Lstat(path); err == nil {
			if fi.Mode()&os.ModeSocket == 0 {
				return nil, fmt.Errorf("listen %s: %s exists and is not a socket", addr, path)
			}
			if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
				c.Close()
				return nil, fmt.Errorf("listen %s: address already in use (another server is accepting on it)", addr)
			}
			if err := os.Remove(path); err != nil {
				return nil, fmt.Errorf("listen %s: remove stale socket: %w", addr, err)
			}
		}
		ln, err := net.Listen("unix", path)
		if err != nil {
			return nil, fmt.Errorf("listen %s: %w", addr, err)
		}
		if mode != 0 {
			if err := os.Chmod(path, mode); err != nil {
				ln.Close()
				return nil, fmt.Errorf("listen %s: chmod: %w", addr, err)
			}
		}
		return ln, nil
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return nil, fmt.Errorf("listen %q: want host:port or unix:/path", addr)
	}
	ln, err := net.Listen("tcp", addr)
	if errors.Is(err, syscall.EADDRINUSE) {
		return nil, fmt.Errorf("listen %s: address already in use", addr)
	}
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", addr, err)
	}
	return ln, nil
}
