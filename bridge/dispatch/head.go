package dispatch

import (
	"bytes"
	"fmt"

	bridgev1 "bridge/proto/bridge/v1"
)

// The response head is checked here, once, for every front (docs/conformance.md
// G10–G13, "The response head from a runner"). The shims check what their
// apps send, but an exec: runner need not, and the uwsgi front writes the
// head to nginx byte for byte: a CR LF in a value would be a header of its
// own (a Set-Cookie, say) on nginx's side. A bad head is refused, never
// repaired: nothing reaches the client and the front answers 502.

// HeadError says what is wrong with a response head a runner sent. It never
// holds a header's value or the reason phrase: a value can be a cookie.
type HeadError struct {
	// Header is the header's name; for a name that is not a token, only
	// the part before the first bad byte. Empty for the status line.
	Header string
	// Problem is what is wrong, for the log.
	Problem string
}

func (e *HeadError) Error() string {
	if e.Header == "" {
		return "response head: " + e.Problem
	}
	return fmt.Sprintf("response header %q: %s", e.Header, e.Problem)
}

// Header names are RFC 9110 tokens: tchar = "!" / "#" / "$" / "%" / "&" /
// "'" / "*" / "+" / "-" / "." / "^" / "_" / "`" / "|" / "~" / DIGIT / ALPHA.
var isTchar = func() (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c], t[c-'a'+'A'] = true, true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	return t
}()

// badTextByte returns the index of the first byte that may not appear in a
// field value or a reason phrase (RFC 9110 field-vchar, RFC 9112
// reason-phrase: HTAB, SP, VCHAR and obs-text 0x80–0xFF), or -1. So CR, LF,
// NUL, every other control byte and DEL are refused.
func badTextByte[T string | []byte](s T) int {
	for i := 0; i < len(s); i++ {
		if !isText[s[i]] {
			return i
		}
	}
	return -1
}

var isText = func() (t [256]bool) {
	for c := range t {
		t[c] = (c >= 0x20 || c == '\t') && c != 0x7f
	}
	return t
}()

// headerKind sorts a header name into the few that the check treats apart.
type headerKind uint8

const (
	plainHeader   headerKind = iota
	hopByHop                 // dropped with a log line (G12, H13)
	contentLength            // digits, one value (G13)
	statusHeader             // CGI's Status: refused (G11)
)

// kindOf classifies a header name (a token) without allocating.
func kindOf(name []byte) headerKind {
	switch len(name) {
	case 2:
		if equalFold(name, "TE") {
			return hopByHop
		}
	case 6:
		if equalFold(name, "Status") {
			return statusHeader
		}
	case 7:
		if equalFold(name, "Trailer") || equalFold(name, "Upgrade") {
			return hopByHop
		}
	case 10:
		if equalFold(name, "Connection") || equalFold(name, "Keep-Alive") {
			return hopByHop
		}
	case 14:
		if equalFold(name, "Content-Length") {
			return contentLength
		}
	case 16:
		if equalFold(name, "Proxy-Connection") {
			return hopByHop
		}
	case 17:
		if equalFold(name, "Transfer-Encoding") {
			return hopByHop
		}
	}
	return plainHeader
}

// equalFold compares an ASCII name with a canonical one, ignoring case.
func equalFold(name []byte, want string) bool {
	if len(name) != len(want) {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if 'a' <= c && c <= 'z' {
			c -= 'a' - 'A'
		}
		w := want[i]
		if 'a' <= w && w <= 'z' {
			w -= 'a' - 'A'
		}
		if c != w {
			return false
		}
	}
	return true
}

// parseLength parses a Content-Length value: decimal digits only (no sign,
// no spaces, no list), at most what an int64 holds. ok is false otherwise.
func parseLength(v []byte) (n int64, ok bool) {
	if len(v) == 0 {
		return 0, false
	}
	for _, c := range v {
		if c < '0' || c > '9' {
			return 0, false
		}
		d := int64(c - '0')
		if n > (1<<63-1-d)/10 {
			return 0, false
		}
		n = n*10 + d
	}
	return n, true
}

// Reasons a header is dropped, for the dropped callback of checkHead.
const (
	dropHopByHop        = "hop-by-hop"
	dropDuplicateLength = "duplicate Content-Length"
)

// checkHead validates a response head. It returns the headers to write: the
// given slice itself unless a header was dropped (hop-by-hop headers, and a
// Content-Length repeated with the same value, which nginx would refuse),
// and the declared Content-Length (-1 without one). dropped is called for
// each header left out. A bad head gives a *HeadError and nothing else:
//
//   - status outside 200–999 (1xx are not final, G10);
//   - a reason phrase with a byte other than HTAB, SP, VCHAR or obs-text;
//   - a header name that is empty or not an RFC 9110 token, or "Status";
//   - a header value with a control byte other than HTAB (CR, LF, NUL, DEL…);
//   - a Content-Length that is not all digits, or several different ones.
//
// A valid head with nothing to drop costs no allocation (the hello path).
func checkHead(status uint32, reason string, headers []*bridgev1.Header, dropped func(name []byte, why string)) ([]*bridgev1.Header, int64, error) {
	if status < 200 || status > 999 {
		return nil, -1, &HeadError{Problem: fmt.Sprintf("status %d is not a final status (200-999)", status)}
	}
	if i := badTextByte(reason); i >= 0 {
		return nil, -1, &HeadError{Problem: fmt.Sprintf("reason phrase has byte 0x%02x at %d", reason[i], i)}
	}
	length := int64(-1)
	var lengthValue []byte
	drop := 0
	for _, h := range headers {
		name := h.Name
		if len(name) == 0 {
			return nil, -1, &HeadError{Problem: "empty header name"}
		}
		for i := 0; i < len(name); i++ {
			if !isTchar[name[i]] {
				return nil, -1, &HeadError{Header: string(name[:i]), Problem: fmt.Sprintf("name is not a token: byte 0x%02x at %d", name[i], i)}
			}
		}
		if i := badTextByte(h.Value); i >= 0 {
			return nil, -1, &HeadError{Header: string(name), Problem: fmt.Sprintf("value has byte 0x%02x at %d", h.Value[i], i)}
		}
		switch kindOf(name) {
		case hopByHop:
			drop++
		case statusHeader:
			return nil, -1, &HeadError{Header: string(name), Problem: "a Status header is not allowed"}
		case contentLength:
			n, ok := parseLength(h.Value)
			switch {
			case !ok:
				return nil, -1, &HeadError{Header: string(name), Problem: "value is not a decimal length"}
			case length < 0:
				length, lengthValue = n, h.Value
			case !bytes.Equal(h.Value, lengthValue):
				return nil, -1, &HeadError{Header: string(name), Problem: "several different values"}
			default:
				drop++
			}
		}
	}
	if drop == 0 {
		return headers, length, nil
	}
	out := make([]*bridgev1.Header, 0, len(headers)-drop)
	seenLength := false
	for _, h := range headers {
		switch kindOf(h.Name) {
		case hopByHop:
			dropped(h.Name, dropHopByHop)
			continue
		case contentLength:
			if seenLength {
				dropped(h.Name, dropDuplicateLength)
				continue
			}
			seenLength = true
		}
		out = append(out, h)
	}
	return out, length, nil
}
