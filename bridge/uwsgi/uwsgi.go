// Package uwsgi reads and writes packets of the uwsgi wire protocol as nginx
// 1.22 speaks it (uwsgi_pass). It is a codec only: it knows nothing about
// dispatch, logging, timeouts or how vars become an application's
// environment; those decisions belong to the front that uses it.
//
// A request packet is a 4-byte header (modifier1 u8, datasize u16
// little-endian, modifier2 u8) followed by exactly datasize bytes of vars.
// The request body, if any, follows the vars block on the same stream and is
// not part of the packet; ReadPacket leaves it unread.
package uwsgi

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// HeaderSize is the length of the fixed packet header.
const HeaderSize = 4

// MaxDataSize is the largest vars block the u16 datasize field can describe.
// nginx refuses to send anything larger ("uwsgi request is too big", U25),
// which is also why one allocation of up to this size per packet is safe.
const MaxDataSize = 0xFFFF

// ErrMalformed reports a vars block whose entries do not fill datasize
// exactly: an entry cut off by the end of the block, or bytes left over that
// cannot start another entry. The caller should answer 400 (U2).
var ErrMalformed = errors.New("uwsgi: malformed vars block")

// ErrTooLarge is returned by AppendPacket when a key, a value or the whole
// vars block does not fit its u16 length field.
var ErrTooLarge = errors.New("uwsgi: packet too large")

// Var is one key/value pair of the vars block. Both are raw bytes: nginx
// sends whatever its variables hold (for example PATH_INFO is percent-decoded
// and need not be UTF-8), and empty values are legal (U3, U8).
type Var struct {
	Name, Value []byte
}

// Packet is a decoded request packet without its body. Vars keeps the wire
// order, duplicates included, because nginx 1.22 sends one var per client
// header line and merging them is the front's policy (U4), not the codec's.
type Packet struct {
	Modifier1, Modifier2 uint8
	Vars                 []Var
}

// Lookup returns the value of the last var called name. Last-wins matches
// uWSGI's dict semantics for repeated keys (U4); callers that must merge
// repeated HTTP_* vars walk Vars themselves.
func (p *Packet) Lookup(name string) (value []byte, ok bool) {
	for i := len(p.Vars) - 1; i >= 0; i-- {
		if string(p.Vars[i].Name) == name {
			return p.Vars[i].Value, true
		}
	}
	return nil, false
}

// ReadPacket reads one packet header and its vars block from r, and nothing
// more: the request body stays in r.
//
// Errors: io.EOF if r ended before the first byte (a connection closed with
// no request); an error wrapping io.ErrUnexpectedEOF if the header or the
// vars block was cut short; an error wrapping ErrMalformed if the block's
// entries do not fill datasize exactly; otherwise the reader's own error,
// wrapped. Every Name and Value points into a single buffer allocated for
// the block, capped so that appending to one cannot overwrite its neighbour.
func ReadPacket(r *bufio.Reader) (*Packet, error) {
	// Peek+Discard instead of io.ReadFull into a local array: the array
	// would escape through the io.Reader interface and cost an allocation.
	// bufio buffers are at least 16 bytes, so Peek(4) cannot hit ErrBufferFull.
	hdr, err := r.Peek(HeaderSize)
	if err != nil {
		if errors.Is(err, io.EOF) {
			if len(hdr) == 0 {
				return nil, io.EOF
			}
			return nil, fmt.Errorf("uwsgi: truncated header (%d of %d bytes): %w", len(hdr), HeaderSize, io.ErrUnexpectedEOF)
		}
		return nil, fmt.Errorf("uwsgi: reading header: %w", err)
	}
	p := &Packet{Modifier1: hdr[0], Modifier2: hdr[3]}
	size := int(binary.LittleEndian.Uint16(hdr[1:3]))
	// Cannot fail: Peek just proved 4 bytes are buffered.
	_, _ = r.Discard(HeaderSize)

	if size == 0 {
		return p, nil
	}
	block := make([]byte, size)
	if n, err := io.ReadFull(r, block); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, fmt.Errorf("uwsgi: vars block cut short (%d of %d bytes): %w", n, size, io.ErrUnexpectedEOF)
		}
		return nil, fmt.Errorf("uwsgi: reading vars block: %w", err)
	}

	// Validate and count first so Vars is allocated once at its exact size.
	n, err := countVars(block)
	if err != nil {
		return nil, err
	}
	p.Vars = make([]Var, 0, n)
	for off := 0; off < len(block); {
		klen := int(binary.LittleEndian.Uint16(block[off:]))
		off += 2
		k := block[off : off+klen : off+klen]
		off += klen
		vlen := int(binary.LittleEndian.Uint16(block[off:]))
		off += 2
		v := block[off : off+vlen : off+vlen]
		off += vlen
		p.Vars = append(p.Vars, Var{Name: k, Value: v})
	}
	return p, nil
}

// countVars checks that block is a whole number of entries and returns how
// many there are. ReadPacket's filling loop relies on it having passed, so
// every bound the loop uses is checked here.
func countVars(block []byte) (int, error) {
	n := 0
	for off := 0; off < len(block); n++ {
		start := off
		for _, field := range [2]string{"key", "value"} {
			if len(block)-off < 2 {
				return 0, fmt.Errorf("%w: entry %d at offset %d: %d byte(s) left, need a 2-byte %s length",
					ErrMalformed, n, start, len(block)-off, field)
			}
			l := int(binary.LittleEndian.Uint16(block[off:]))
			off += 2
			if l > len(block)-off {
				return 0, fmt.Errorf("%w: entry %d at offset %d: %s length %d exceeds the %d byte(s) left",
					ErrMalformed, n, start, field, l, len(block)-off)
			}
			off += l
		}
	}
	return n, nil
}

// AppendPacket appends the wire form of p to dst. On error dst is returned
// unchanged, so a caller never sends half a packet. Every var is written,
// including empty values, because the encoding has no way to omit one.
func AppendPacket(dst []byte, p *Packet) ([]byte, error) {
	size := 0
	for i, v := range p.Vars {
		if len(v.Name) > MaxDataSize || len(v.Value) > MaxDataSize {
			return dst, fmt.Errorf("%w: var %d (%.32q): key %d / value %d bytes, limit %d",
				ErrTooLarge, i, v.Name, len(v.Name), len(v.Value), MaxDataSize)
		}
		size += 4 + len(v.Name) + len(v.Value)
		// Checked inside the loop so size cannot overflow however many
		// vars there are.
		if size > MaxDataSize {
			return dst, fmt.Errorf("%w: vars block exceeds %d bytes", ErrTooLarge, MaxDataSize)
		}
	}
	dst = append(dst, p.Modifier1, 0, 0, p.Modifier2)
	binary.LittleEndian.PutUint16(dst[len(dst)-3:], uint16(size))
	for _, v := range p.Vars {
		dst = binary.LittleEndian.AppendUint16(dst, uint16(len(v.Name)))
		dst = append(dst, v.Name...)
		dst = binary.LittleEndian.AppendUint16(dst, uint16(len(v.Value)))
		dst = append(dst, v.Value...)
	}
	return dst, nil
}
