// Package front holds bridge's listeners: the uwsgi and HTTP fronts turn
// their protocol's request into the one canonical request.Request and write
// the runner's response back in their protocol.
package front

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"hash/maphash"
	"net"
	"strings"

	bridgev1 "bridge/proto/bridge/v1"
)

// varList builds the canonical CGI variable list. It merges repeated HTTP_*
// headers in arrival order (", ", or "; " for Cookie) and lets a repeated
// non-HTTP_ key's last value win (U4), as uWSGI does.
//
// Finding a name takes constant expected time, so that a request with
// thousands of headers costs linear work, not quadratic (issue 14: 9,500
// headers in 64 KiB took 137 ms when every add scanned the list). A short
// list is scanned, which is cheapest for the usual 20–40 vars; past
// linearMax vars it gets a hash index. Repeats of one header grow its merged
// value in place, so joining n of them copies O(total length) bytes, not
// O(n·total).
type varList struct {
	vars  []*bridgev1.Var
	store []bridgev1.Var // backing for vars: one allocation, not one per var

	// slots is the hash index once the list has outgrown linearMax, else
	// nil: open addressing with linear probing, a vars index + 1 per slot,
	// 0 for empty, at most half full.
	slots []int32
	// Bit i of own says vars[i].Value was allocated by a merge, so the
	// next merge may append to it; any other value may share its array
	// with the packet or the caller. ownMore holds bits 64 and up (a
	// pointer into the list itself would move it to the heap).
	own     uint64
	ownMore []uint64

	// Work done, for the tests that prove it linear (vars_test.go): index
	// slots visited and names compared; bytes copied by merges.
	probes, copied int
}

// linearMax is the longest list that is scanned rather than indexed: above
// the usual request's vars, where scanning is cheaper than hashing
// (vars_bench_test.go).
const linearMax = 48

// hashSeed is random per process, so that no client can choose header names
// that collide in the index.
var hashSeed = maphash.MakeSeed()

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

// find returns name's index in vars, or -1 and the index slot where it
// goes. It builds the index when the list has outgrown scanning. The fronts
// look names up as []byte (packet and header bytes) and the fixed CGI names
// as string; one body serves both, without copying either to the other.
func find[T string | []byte](l *varList, name T) (i, slot int) {
	if l.slots == nil {
		if len(l.vars) <= linearMax {
			for i, v := range l.vars {
				if string(v.Name) == string(name) {
					l.probes += i + 1
					return i, 0
				}
			}
			l.probes += len(l.vars)
			return -1, 0
		}
		l.reindex()
	}
	mask := len(l.slots) - 1
	for s := int(hashName(name)) & mask; ; s = (s + 1) & mask {
		l.probes++
		j := l.slots[s]
		if j == 0 {
			return -1, s
		}
		if string(l.vars[j-1].Name) == string(name) {
			return int(j - 1), 0
		}
	}
}

// hashName hashes a name given as bytes or as a string alike
// (maphash.String hashes as maphash.Bytes does).
func hashName[T string | []byte](name T) uint64 {
	switch n := any(name).(type) {
	case string:
		return maphash.String(hashSeed, n)
	default:
		return maphash.Bytes(hashSeed, n.([]byte))
	}
}

// push appends a var whose name is not in the list, at the index slot find
// gave.
func (l *varList) push(name, value []byte, slot int) {
	l.vars = append(l.vars, l.newVar(name, value))
	switch {
	case l.slots == nil:
	case 2*len(l.vars) > len(l.slots):
		l.reindex()
	default:
		l.slots[slot] = int32(len(l.vars))
	}
}

// reindex builds the hash index afresh, with room for the list to double.
func (l *varList) reindex() {
	size := 16
	for size < 4*len(l.vars) {
		size *= 2
	}
	l.slots = make([]int32, size)
	mask := size - 1
	for i, v := range l.vars {
		s := int(hashName(v.Name)) & mask
		for l.probes++; l.slots[s] != 0; l.probes++ {
			s = (s + 1) & mask
		}
		l.slots[s] = int32(i + 1)
	}
}

func (l *varList) owns(i int) bool {
	if i < 64 {
		return l.own&(1<<i) != 0
	}
	w := i>>6 - 1
	return w < len(l.ownMore) && l.ownMore[w]&(1<<(i&63)) != 0
}

func (l *varList) setOwn(i int, own bool) {
	word := &l.own
	if i >= 64 {
		w := i>>6 - 1
		if w >= len(l.ownMore) {
			if !own {
				return
			}
			l.ownMore = append(l.ownMore, make([]uint64, w+1-len(l.ownMore))...)
		}
		word = &l.ownMore[w]
	}
	if own {
		*word |= 1 << (i & 63)
	} else {
		*word &^= 1 << (i & 63)
	}
}

var (
	httpPrefix = []byte("HTTP_")
	cookieName = []byte("HTTP_COOKIE")
)

// add appends or merges one variable. A name that cannot be a CGI variable
// (empty, or with "=" or a control byte) is dropped: only the uwsgi front
// meets one, from nginx with ignore_invalid_headers off or from a
// uwsgi_param, and an app could take it for something else.
func (l *varList) add(name, value []byte) {
	i, slot := find(l, name)
	switch {
	case i < 0:
		if validName(name) {
			l.push(name, value, slot)
		}
	case bytes.HasPrefix(name, httpPrefix):
		sep := ", "
		if bytes.Equal(name, cookieName) {
			sep = "; "
		}
		l.merge(i, sep, value)
	default:
		l.vars[i].Value = value
		l.setOwn(i, false)
	}
}

// merge appends sep and value to vars[i]'s value. The first merge copies it
// to an array the list owns; later ones append there, moving it to one
// twice the size when it is full, so that the moves add up to less than the
// final length.
func (l *varList) merge(i int, sep string, value []byte) {
	v := l.vars[i]
	n := len(sep) + len(value)
	if !l.owns(i) {
		merged := make([]byte, 0, len(v.Value)+n)
		l.copied += len(v.Value)
		v.Value = append(merged, v.Value...)
		l.setOwn(i, true)
	} else if cap(v.Value)-len(v.Value) < n {
		grown := make([]byte, len(v.Value), 2*(len(v.Value)+n))
		l.copied += copy(grown, v.Value)
		v.Value = grown
	}
	v.Value = append(append(v.Value, sep...), value...)
	l.copied += n
}

// validName reports whether name can be a CGI variable name: not empty, no
// control byte, no "=". It runs for every var, so it tests 8 bytes at a
// time, the last 8 overlapping the others: (x - 0x01…) &^ x & 0x80… is not
// 0 exactly when x has a 0 byte, and (x - 0x20…) &^ x & 0x80… when it has
// a byte under 0x20.
func validName(name []byte) bool {
	if len(name) < 8 {
		for _, c := range name {
			if c < ' ' || c == '=' || c == 0x7f {
				return false
			}
		}
		return len(name) > 0
	}
	for i := 0; ; i += 8 {
		if i > len(name)-8 {
			i = len(name) - 8
		}
		if !validWord(binary.LittleEndian.Uint64(name[i:])) {
			return false
		}
		if i == len(name)-8 {
			return true
		}
	}
}

func validWord(x uint64) bool {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	eq, del := x^('='*ones), x^(0x7f*ones)
	return ((x-' '*ones)&^x|(eq-ones)&^eq|(del-ones)&^del)&highs == 0
}

// get returns a variable's value, or nil.
func (l *varList) get(name string) []byte {
	if i, _ := find(l, name); i >= 0 {
		return l.vars[i].Value
	}
	return nil
}

// has reports whether name is present.
func (l *varList) has(name string) bool {
	i, _ := find(l, name)
	return i >= 0
}

// set replaces or appends name.
func (l *varList) set(name string, value []byte) {
	i, slot := find(l, name)
	if i < 0 {
		l.push([]byte(name), value, slot)
		return
	}
	l.vars[i].Value = value
	l.setOwn(i, false)
}

// del removes name. The index, if any, is rebuilt at the next lookup, and
// merged values are copied again at their next merge.
func (l *varList) del(name string) {
	if i, _ := find(l, name); i >= 0 {
		l.vars = append(l.vars[:i], l.vars[i+1:]...)
		l.slots = nil
		l.own = 0
		clear(l.ownMore)
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
