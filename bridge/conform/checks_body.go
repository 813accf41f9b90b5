package conform

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	bridgev1 "bridge/proto/bridge/v1"
)

// pattern makes n bytes that use every byte value, in a sequence that does
// not repeat at any power-of-two period, so a dropped, repeated or
// reordered piece shows.
func pattern(n int) []byte {
	b := make([]byte, n)
	x := uint32(2463534242)
	for i := range b {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		b[i] = byte(x)
	}
	return b
}

// echo sends size bytes in frames of piece bytes (0: in the head frame)
// and has the app read them in reads of read bytes; the answer must be the
// same bytes. Sizes past gRPC's flow-control windows make both directions
// wait for window updates.
func echo(size, piece, read int) func(*kit) error {
	return func(k *kit) error {
		p, err := k.runner()
		if err != nil {
			return err
		}
		body := pattern(size)
		id := k.id("echo")
		rep := k.do(p, id, req{method: "POST", path: fmt.Sprintf("/echo?read=%d", read), body: body, piece: piece}, 60*time.Second)
		if err := okResponse(rep); err != nil {
			return fmt.Errorf("C11: %w", err)
		}
		if got := rep.body(); !bytes.Equal(got, body) {
			at := 0
			for at < min(len(got), len(body)) && got[at] == body[at] {
				at++
			}
			return broken(fmt.Sprintf("C11: the app read %d bytes back, want %d; first difference at byte %d", len(got), len(body), at), rep)
		}
		for _, f := range rep.frames {
			if len(f.f.Body) > 4<<20 {
				return broken("C11: a body frame over gRPC's 4 MiB message limit (chunks must stay ≤ 1 MiB)", rep)
			}
		}
		return nil
	}
}

func checkStreaming(k *kit) error {
	p, err := k.runner()
	if err != nil {
		return err
	}
	rep := k.get(p, k.id("stream"), "/stream?n=3&ms=300")
	if err := wantBody(rep, "chunk-1\nchunk-2\nchunk-3\n"); err != nil {
		return fmt.Errorf("C12: %w", err)
	}
	var at []time.Duration
	for _, f := range rep.frames {
		if len(f.f.Body) > 0 {
			at = append(at, f.at)
		}
	}
	if len(at) != 3 {
		return broken("C12: each chunk must leave as its own frame when the app produces it", rep)
	}
	// Spaced as produced: a chunk held back for the next would arrive with
	// it. (No bound on the first: a loaded machine may be slow to start.)
	if at[1]-at[0] < 200*time.Millisecond || at[2]-at[1] < 200*time.Millisecond {
		return broken("C12: chunks must arrive as produced (the app sleeps 300 ms between them)", rep)
	}
	return nil
}

// kitFile is the content of the kit app's /file (runners/kit/README.md).
var kitFile = strings.Repeat("bridge-kit-file\n", 20000)

func checkFile(k *kit) error {
	p, err := k.runner()
	if err != nil {
		return err
	}
	const skip = 7
	rep := k.get(p, k.id("file"), fmt.Sprintf("/file?skip=%d", skip))
	if err := okResponse(rep); err != nil {
		return fmt.Errorf("C13: %w", err)
	}
	var got []byte
	for _, f := range rep.frames {
		got = append(got, f.f.Body...)
		if fl := f.f.File; fl != nil {
			b, err := readRegion(fl)
			if err != nil {
				return broken(fmt.Sprintf("C13: the file frame names a region bridge cannot send: %v", err), rep)
			}
			got = append(got, b...)
		}
	}
	if string(got) != kitFile[skip:] {
		return broken(fmt.Sprintf("C13: the file body is %d bytes, want %d from offset %d of the file", len(got), len(kitFile)-skip, skip), rep)
	}
	return nil
}

// readRegion reads a File frame's bytes as bridge's fronts would.
func readRegion(fl *bridgev1.File) ([]byte, error) {
	f, err := os.Open(fl.Path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if fl.Offset < 0 || fl.Length < -1 {
		return nil, fmt.Errorf("offset %d, length %d", fl.Offset, fl.Length)
	}
	if _, err := f.Seek(fl.Offset, io.SeekStart); err != nil {
		return nil, err
	}
	if fl.Length == -1 {
		return io.ReadAll(f)
	}
	b := make([]byte, fl.Length)
	if _, err := io.ReadFull(f, b); err != nil {
		return nil, fmt.Errorf("the file is shorter than offset+length: %w", err)
	}
	return b, nil
}

func checkStdout(k *kit) error {
	p, err := k.runner()
	if err != nil {
		return err
	}
	if err := wantBody(k.get(p, k.id("print"), "/print"), "printed"); err != nil {
		return err
	}
	logged := func(text string) func(map[string]any) bool {
		return func(l map[string]any) bool {
			m, _ := l["message"].(string)
			return strings.Contains(m, text)
		}
	}
	for _, text := range []string{"KIT-IMPORT-PRINT", "KIT-STDOUT"} {
		if len(k.logs.waitLog(p.name, 2*time.Second, logged(text))) == 0 {
			return fmt.Errorf("G7: the app printed %s to stdout; it must reach bridge's log through stderr", text)
		}
	}
	// Stdout is read by another goroutine: give stray bytes time to arrive.
	for deadline := time.Now().Add(300 * time.Millisecond); time.Now().Before(deadline); {
		if stray, n := p.StrayStdout(); n > 0 {
			return fmt.Errorf("C2: %d byte(s) reached stdout after the handshake line: %s", n, preview(stray))
		}
		time.Sleep(10 * time.Millisecond)
	}
	return nil
}
