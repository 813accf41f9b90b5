package front

import (
	"bytes"
	"io"
	"os"
	"testing"
	"testing/iotest"

	"bridge/bridge/request"
)

// pieces hold what arrived, in pieces of at most prefetchMax, and read back
// the same bytes as often as asked (a retry reads the body again).
func TestPiecesFillAndReread(t *testing.T) {
	body := bytes.Repeat([]byte("abcdefghij"), (prefetchMax+2*pieceMax+1234)/10)
	for _, c := range []struct {
		name string
		want int64
		held int
	}{
		{"known length", int64(len(body)), len(body)},
		{"less than there is", prefetchMax + 5, prefetchMax + 5},
		{"more than there is", int64(len(body)) + 1000, len(body)},
	} {
		var p pieces
		// One byte per read: a piece is filled across many reads.
		got, err := p.fill(iotest.OneByteReader(bytes.NewReader(body)), c.want)
		if err != nil || got != int64(c.held) || p.size() != got {
			t.Fatalf("%s: fill = %d, %v (size %d), want %d", c.name, got, err, p.size(), c.held)
		}
		for i, b := range p {
			full := pieceMax
			if i == 0 {
				full = prefetchMax // the first frame's share
			}
			if len(*b) > full || (i < len(p)-1 && len(*b) != full) {
				t.Fatalf("%s: piece %d holds %d bytes", c.name, i, len(*b))
			}
		}
		first := &piecesReader{p: p}
		a, _ := io.ReadAll(iotest.HalfReader(first))
		req := &request.Request{}
		req.Body = first
		rewind(req)
		b, _ := io.ReadAll(req.Body)
		rewind(req)
		var whole []byte
		for piece := req.Body.(*piecesReader).NextPiece(); piece != nil; piece = req.Body.(*piecesReader).NextPiece() {
			whole = append(whole, piece...)
		}
		if !bytes.Equal(a, body[:c.held]) || !bytes.Equal(b, a) || !bytes.Equal(whole, a) {
			t.Fatalf("%s: read %d, %d, then %d bytes by pieces, want %d each time", c.name, len(a), len(b), len(whole), c.held)
		}
		p.Close()
	}
}

func TestPiecesReadError(t *testing.T) {
	var p pieces
	got, err := p.fill(iotest.TimeoutReader(bytes.NewReader(make([]byte, 10))), 100)
	if err == nil || got != 10 {
		t.Fatalf("fill = %d, %v; want the 10 bytes before the error, and the error", got, err)
	}
}

// Past bodyMemoryMax (all requests' bodies together) a body goes to a temp
// file, whole; every piece given back is uncounted.
func TestBodyMemoryBudget(t *testing.T) {
	h := &Handler{Limits: DefaultLimits()}
	body := bytes.Repeat([]byte("0123456789abcdef"), 100<<10/16)
	read := func() (io.Closer, []byte) {
		req := &request.Request{Body: bytes.NewReader(body), ContentLength: int64(len(body))}
		held, err := h.readBody(req)
		if err != nil {
			t.Fatal(err)
		}
		got := append([]byte(nil), req.Prefetched...)
		if req.Body != nil {
			rest, _ := io.ReadAll(req.Body)
			got = append(got, rest...)
		}
		return held, got
	}
	before := bodyMemory.Load()
	held, got := read()
	if _, ok := held.(pieces); !ok || !bytes.Equal(got, body) {
		t.Fatalf("with memory free: held %T, %d bytes back; want pieces, %d", held, len(got), len(body))
	}
	held.Close()
	if now := bodyMemory.Load(); now != before {
		t.Fatalf("body memory %d after Close, %d before", now, before)
	}

	bodyMemory.Add(bodyMemoryMax - prefetchMax - 1) // the first piece fits, the second does not
	defer bodyMemory.Add(-(bodyMemoryMax - prefetchMax - 1))
	held, got = read()
	if _, ok := held.(*os.File); !ok || !bytes.Equal(got, body) {
		t.Fatalf("with memory in use: held %T, %d bytes back; want a file, %d", held, len(got), len(body))
	}
	held.Close()
	if now := bodyMemory.Load(); now != before+bodyMemoryMax-prefetchMax-1 {
		t.Fatalf("body memory %d after spooling, want %d", now, before+bodyMemoryMax-prefetchMax-1)
	}
}
