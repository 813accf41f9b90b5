package front

import (
	"errors"
	"io"
	"sync"
	"sync/atomic"
)

// pieceMax is the largest piece past the first (which is at most
// prefetchMax): the size of a request body frame (dispatch's maxChunk), so
// that each piece goes to the runner as one frame, as it is.
const pieceMax = 256 << 10

// smallPiece is the largest piece allocated for itself; bigger ones come
// from pools of prefetchMax and pieceMax buffers, so that a body held in
// memory costs neither an allocation nor the zeroing of one.
const smallPiece = 4 << 10

var (
	firstPieces = sync.Pool{New: func() any { b := make([]byte, prefetchMax); return &b }}
	restPieces  = sync.Pool{New: func() any { b := make([]byte, pieceMax); return &b }}
)

// bodyMemoryMax bounds the bytes of request bodies held in memory at once,
// all requests together: past it a body goes to a temp file, so that many
// uploads at once (or clients that send all but a body's last byte and
// stall) cost disk, not bridge's memory.
const bodyMemoryMax = 64 << 20

var bodyMemory atomic.Int64

// errBodyMemory says the pieces stopped because bodyMemoryMax was reached;
// what they hold is kept and the rest of the body goes to a file.
var errBodyMemory = errors.New("request body memory in use")

// getPiece returns a buffer of n bytes, counted against bodyMemoryMax by
// its capacity; nil if that would pass it.
func getPiece(n int) *[]byte {
	var bp *[]byte
	switch {
	case n <= smallPiece:
		b := make([]byte, n)
		bp = &b
	case n <= prefetchMax:
		bp = firstPieces.Get().(*[]byte)
	default:
		bp = restPieces.Get().(*[]byte)
	}
	if bodyMemory.Add(int64(cap(*bp))) > bodyMemoryMax {
		putPiece(bp)
		return nil
	}
	*bp = (*bp)[:n]
	return bp
}

// putPiece gives a buffer back and uncounts it.
func putPiece(bp *[]byte) {
	bodyMemory.Add(-int64(cap(*bp)))
	*bp = (*bp)[:cap(*bp)]
	switch cap(*bp) {
	case prefetchMax:
		firstPieces.Put(bp)
	case pieceMax:
		restPieces.Put(bp)
	}
}

// pieces is a body held in memory as the pieces it arrived in. Memory grows
// with what arrived, never with what a Content-Length promises, and nothing
// is copied to grow it (a growing buffer would copy and discard about twice
// the body).
type pieces []*[]byte

// fill reads r into new pieces until r ends or want bytes are held, and
// returns how many bytes it holds. It stops with errBodyMemory when
// bodyMemoryMax is reached.
func (p *pieces) fill(r io.Reader, want int64) (int64, error) {
	var got int64
	for got < want {
		size := pieceMax
		if len(*p) == 0 {
			size = prefetchMax
		}
		bp := getPiece(int(min(int64(size), want-got)))
		if bp == nil {
			return got, errBodyMemory
		}
		n, err := io.ReadFull(r, *bp)
		if n == 0 {
			putPiece(bp)
		} else {
			*bp = (*bp)[:n]
			*p = append(*p, bp)
			got += int64(n)
		}
		switch err {
		case nil:
		case io.EOF, io.ErrUnexpectedEOF:
			return got, nil
		default:
			return got, err
		}
	}
	return got, nil
}

func (p pieces) size() (n int64) {
	for _, b := range p {
		n += int64(len(*b))
	}
	return n
}

// Close gives the pieces back to the pool once nothing reads them: after
// the request's last exchange, whose sender has returned by then.
func (p pieces) Close() error {
	for _, b := range p {
		putPiece(b)
	}
	return nil
}

// piecesReader reads pieces in order without changing them: rewind makes
// a new reader over the same pieces, from the beginning. The request
// sender takes them whole through NextPiece, without a copy.
type piecesReader struct {
	p      pieces
	i, off int // the next byte is (*p[i])[off]
}

func (r *piecesReader) Read(b []byte) (int, error) {
	n := 0
	for n < len(b) && r.i < len(r.p) {
		piece := *r.p[r.i]
		c := copy(b[n:], piece[r.off:])
		n += c
		r.off += c
		if r.off == len(piece) {
			r.i, r.off = r.i+1, 0
		}
	}
	if n == 0 && len(b) > 0 {
		return 0, io.EOF
	}
	return n, nil
}

// NextPiece returns the rest of the current piece and moves past it; nil
// at the end.
func (r *piecesReader) NextPiece() []byte {
	if r.i >= len(r.p) {
		return nil
	}
	b := (*r.p[r.i])[r.off:]
	r.i, r.off = r.i+1, 0
	return b
}
