package uwsgi

import "strconv"

// Header is one response header line. Name and Value are written verbatim:
// validating them (no CR, LF or NUL; a token name) is the caller's job, done
// where a runner's response head enters bridge (bridge/dispatch, checkHead;
// docs/conformance.md G26).
type Header struct {
	Name, Value []byte
}

// AppendResponseHead appends an HTTP/1.1 status line, one "Name: value" line
// per header in the given order, and the blank line that ends the head
// (U18). The version is always HTTP/1.1 whatever the request's
// SERVER_PROTOCOL was, because nginx only reads the code and reason (U29).
//
// It adds no headers of its own and never chooses a transfer coding: nginx's
// uwsgi module does not decode chunked bodies, so framing (Content-Length or
// close-delimited) is the caller's decision. status should be 100–999; it
// is written in decimal as given. The reason may be empty; the space before
// it is still written, as RFC 9112's status-line requires. The only
// allocation is growing dst.
func AppendResponseHead(dst []byte, status int, reason string, headers []Header) []byte {
	dst = append(dst, "HTTP/1.1 "...)
	dst = strconv.AppendInt(dst, int64(status), 10)
	dst = append(dst, ' ')
	dst = append(dst, reason...)
	dst = append(dst, "\r\n"...)
	for _, h := range headers {
		dst = append(dst, h.Name...)
		dst = append(dst, ": "...)
		dst = append(dst, h.Value...)
		dst = append(dst, "\r\n"...)
	}
	return append(dst, "\r\n"...)
}
