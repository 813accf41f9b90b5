package front

import (
	"strings"

	bridgev1 "bridge/proto/bridge/v1"
)

// hopByHop lists response headers that belong to one connection and must
// never be forwarded from an app (G12, H13). The Python shim already rejects
// them (W18); fronts drop them too so an exec: runner cannot break framing.
var hopByHop = []string{"Connection", "Keep-Alive", "Proxy-Connection", "Transfer-Encoding", "TE", "Trailer", "Upgrade"}

func isHopByHop(name []byte) bool {
	for _, h := range hopByHop {
		if len(name) == len(h) && strings.EqualFold(string(name), h) {
			return true
		}
	}
	return false
}

// endToEnd returns headers without hop-by-hop ones, reusing the slice when
// there is nothing to drop (the usual case).
func endToEnd(headers []*bridgev1.Header, dropped func(name []byte)) []*bridgev1.Header {
	for i, h := range headers {
		if !isHopByHop(h.Name) {
			continue
		}
		out := append([]*bridgev1.Header(nil), headers[:i]...)
		for _, h := range headers[i:] {
			if isHopByHop(h.Name) {
				dropped(h.Name)
				continue
			}
			out = append(out, h)
		}
		return out
	}
	return headers
}
