// Package front holds bridge's listeners: the uwsgi and HTTP fronts turn
// their protocol's request into the one canonical request.Request and write
// the runner's response back in their protocol.
package front

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"net"
	"strings"

	bridgev1 "bridge/proto/bridge/v1"
)

// varList builds the canonical CGI variable list. It merges repeated HTTP_*
// headers in arrival order (", ", or "; " for Cookie) and lets a repeated
// non-HTTP_ key's last value win (U4), as uWSGI does.
type varList struct {
	vars  []*bridgev1.Var
	store []bridgev1.Var // backing for vars: one allocation, not one per var
}

func newVarList(n int) *varList {
	return &varList{vars: make([]*bridgev1.Var, 0, n), store: make([]bridgev1.Var, 0, n)}
}

// newVar takes the next Var from store. A full store is replaced, never
// grown: vars already point into it, and proto messages must not be copied.
func (l *varList) newVar(name, value []byte) *bridgev1.Var {
	if len(l.store) == cap(l.store) {
		l.store = make([]bridgev1.Var, 0, 8)
	}
	l.store = l.store[:len(l.store)+1]
	v := &l.store[len(l.store)-1]
	v.Name, v.Value = name, value
	return v
}

func (l *varList) index(name []byte) int {
	for i, v := range l.vars {
		if bytes.Equal(v.Name, name) {
			return i
		}
	}
	return -1
}

var cookieName = []byte("HTTP_COOKIE")

// add appends or merges one variable.
func (l *varList) add(name, value []byte) {
	i := l.index(name)
	switch {
	case i < 0:
		l.vars = append(l.vars, l.newVar(name, value))
	case bytes.HasPrefix(name, []byte("HTTP_")):
		sep := ", "
		if bytes.Equal(name, cookieName) {
			sep = "; "
		}
		old := l.vars[i].Value
		merged := make([]byte, 0, len(old)+len(sep)+len(value))
		merged = append(append(append(merged, old...), sep...), value...)
		l.vars[i].Value = merged
	default:
		l.vars[i].Value = value
	}
}

// get returns a variable's value, or nil.
func (l *varList) get(name string) []byte {
	for _, v := range l.vars {
		if string(v.Name) == name {
			return v.Value
		}
	}
	return nil
}

// has reports whether name is present.
func (l *varList) has(name string) bool {
	for _, v := range l.vars {
		if string(v.Name) == name {
			return true
		}
	}
	return false
}

// set replaces or appends name.
func (l *varList) set(name string, value []byte) {
	for _, v := range l.vars {
		if string(v.Name) == name {
			v.Value = value
			return
		}
	}
	l.vars = append(l.vars, l.newVar([]byte(name), value))
}

// del removes name.
func (l *varList) del(name string) {
	for i, v := range l.vars {
		if string(v.Name) == name {
			l.vars = append(l.vars[:i], l.vars[i+1:]...)
			return
		}
	}
}

// splitScript applies a mount prefix (U13): SCRIPT_NAME loses a trailing
// slash and, when PATH_INFO starts with it at a segment boundary, PATH_INFO
// loses the prefix. It also makes sure both are present and that PATH_INFO
// is at least "/" at the root (W4).
func (l *varList) splitScript() {
	script := bytes.TrimRight(l.get("SCRIPT_NAME"), "/")
	path := l.get("PATH_INFO")
	if len(script) > 0 && bytes.HasPrefix(path, script) && (len(path) == len(script) || path[len(script)] == '/') {
		path = path[len(script):]
	}
	if len(script) == 0 && len(path) == 0 {
		path = []byte("/")
	}
	l.set("SCRIPT_NAME", script)
	l.set("PATH_INFO", path)
}

// ensure sets name to def when it is missing or empty.
func (l *varList) ensure(name string, def []byte) {
	if len(l.get(name)) == 0 {
		l.set(name, def)
	}
}

// validRequestID accepts ids a client or proxy may set: short, printable,
// no separators that could split a log line.
func validRequestID(id []byte) bool {
	if len(id) == 0 || len(id) > 128 {
		return false
	}
	for _, c := range id {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c == '-' || c == '_' || c == '.' || c == ':' || c == '+' || c == '/' || c == '=':
		default:
			return false
		}
	}
	return true
}

// requestID takes a well-formed X-Request-Id, else makes a new one.
func requestID(header []byte) string {
	if validRequestID(header) {
		return string(header)
	}
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// hostPort splits a Host value into host and port, keeping IPv6 brackets.
func hostPort(host string) (string, string) {
	if h, p, err := net.SplitHostPort(host); err == nil {
		if strings.Contains(h, ":") {
			h = "[" + h + "]"
		}
		return h, p
	}
	return host, ""
}

// defaultPort is the port implied by a scheme.
func defaultPort(scheme string) string {
	if scheme == "https" {
		return "443"
	}
	return "80"
}

// digits reports whether b is a non-empty run of ASCII digits.
func digits(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}
