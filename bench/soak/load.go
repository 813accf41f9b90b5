package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync/atomic"
	"time"
)

// The normal kinds of request; each has its own client goroutines.
const (
	kindHello  = "hello"  // GET /hello
	kindUpload = "upload" // POST /upload, 1 KiB to 2 MiB of random bytes, answer checked
	kindStream = "stream" // GET /stream?n=N, N 1 KiB chunks, every byte checked
	kindBig    = "big"    // GET /big?kib=N, 64 KiB to 4 MiB, every byte checked
)

var hello = []byte("Hello, World!")

var reqSeq atomic.Int64

// client sends requests of one kind to one bridge, one at a time, until
// stopAt; a share of them (o.directShare) goes to bridge's --http, the rest
// through nginx. Requests run under hard, which is cancelled when the soak
// stops waiting for stragglers: those count as cancelled, not failed.
func client(hard context.Context, o *options, rec *recorder, t *target, kind string, stopAt time.Time, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 0x50a4))
	tr := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		DisableCompression:  true,
		MaxIdleConnsPerHost: 1,
		IdleConnTimeout:     30 * time.Second,
	}
	defer tr.CloseIdleConnections()
	cl := &http.Client{Transport: tr, Timeout: o.reqTimeout}
	var upload []byte
	if kind == kindUpload {
		upload = make([]byte, 2<<20+2048)
		fill := rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8), 's', 'o', 'a', 'k'})
		_, _ = fill.Read(upload)
	}
	for hard.Err() == nil && time.Now().Before(stopAt) {
		via, base := "nginx", "http://"+t.nginxAddr
		if rng.Float64() < o.directShare {
			via, base = "direct", "http://"+t.httpAddr
		}
		k := rowKey{t.name, kind, via}
		id := fmt.Sprintf("soak-%s-%s-%d", t.name, kind, reqSeq.Add(1))
		rec.sent(k)
		start := time.Now()
		err := doRequest(hard, cl, base, kind, id, rng, upload)
		end := time.Now()
		switch {
		case err == nil:
			rec.ok(k, end.Sub(start))
		case hard.Err() != nil:
			rec.cancelled(k)
		default:
			rec.failed(failure{Runner: t.name, Kind: kind, Via: via, ID: id, Start: start, End: end, Reason: reason(err)})
		}
		if o.pause > 0 {
			sleepCtx(hard, time.Duration(rng.Int64N(int64(o.pause)+1)))
		}
	}
}

// doRequest sends one request of kind and checks the whole answer.
func doRequest(ctx context.Context, cl *http.Client, base, kind, id string, rng *rand.Rand, upload []byte) error {
	var (
		req   *http.Request
		err   error
		check func(io.Reader) error
	)
	switch kind {
	case kindHello:
		req, err = http.NewRequestWithContext(ctx, "GET", base+"/hello", nil)
		check = func(r io.Reader) error { return expectBody(r, hello) }
	case kindUpload:
		n := 1024 + rng.IntN(64<<10) // half of them fit in the first frame
		if rng.IntN(2) == 0 {
			n = 1024 + rng.IntN(2<<20)
		}
		off := rng.IntN(1024)
		body := upload[off : off+n]
		sum := sha256.Sum256(body)
		req, err = http.NewRequestWithContext(ctx, "POST", base+"/upload", bytes.NewReader(body))
		want := []byte(fmt.Sprintf("%d %s", n, hex.EncodeToString(sum[:])))
		check = func(r io.Reader) error { return expectBody(r, want) }
	case kindStream:
		n := 20 + rng.IntN(381)
		req, err = http.NewRequestWithContext(ctx, "GET", fmt.Sprintf("%s/stream?n=%d", base, n), nil)
		check = func(r io.Reader) error { return expectPattern(r, int64(n)*1024, streamByte) }
	case kindBig:
		kib := 64 + rng.IntN(4033)
		req, err = http.NewRequestWithContext(ctx, "GET", fmt.Sprintf("%s/big?kib=%d", base, kib), nil)
		check = func(r io.Reader) error { return expectPattern(r, int64(kib)*1024, bigByte) }
	default:
		return fmt.Errorf("unknown kind %q", kind)
	}
	if err != nil {
		return err
	}
	req.Header.Set("X-Request-Id", id)
	resp, err := cl.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 120))
		return fmt.Errorf("status %d: %s", resp.StatusCode, strings.TrimSpace(string(b)))
	}
	return check(resp.Body)
}

func expectBody(r io.Reader, want []byte) error {
	got, err := io.ReadAll(io.LimitReader(r, int64(len(want))+1024))
	if err != nil {
		return fmt.Errorf("body after %d bytes: %w", len(got), err)
	}
	if !bytes.Equal(got, want) {
		return fmt.Errorf("wrong body: %.60q, want %.60q", got, want)
	}
	return nil
}

var digitDiv = [4]int64{1000, 100, 10, 1}

// streamByte is byte pos of /stream's answer: chunk i is "%04d" of i, 1019
// x's and a newline.
func streamByte(pos int64) byte {
	i, off := pos/1024, pos%1024
	switch {
	case off < 4:
		return "0123456789"[(i%10000)/digitDiv[off]%10]
	case off == 1023:
		return '\n'
	default:
		return 'x'
	}
}

// bigByte is byte pos of /big's answer: "0123456789abcdef" repeated.
func bigByte(pos int64) byte { return "0123456789abcdef"[pos%16] }

// expectPattern reads r to its end and checks that it is exactly size bytes
// of the pattern.
func expectPattern(r io.Reader, size int64, at func(int64) byte) error {
	buf := make([]byte, 64<<10)
	var pos int64
	for {
		n, err := r.Read(buf)
		for i := 0; i < n; i++ {
			if pos >= size {
				return fmt.Errorf("body longer than %d bytes", size)
			}
			if buf[i] != at(pos) {
				return fmt.Errorf("wrong byte at %d of %d", pos, size)
			}
			pos++
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("body after %d of %d bytes: %w", pos, size, err)
		}
	}
	if pos != size {
		return fmt.Errorf("body cut at %d of %d bytes", pos, size)
	}
	return nil
}

// reason is a short text for a failure's cause.
func reason(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	msg := err.Error()
	if errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, context.DeadlineExceeded) ||
		strings.Contains(msg, "Client.Timeout") {
		msg = "timeout: " + msg
	}
	if len(msg) > 160 {
		msg = msg[:160] + "…"
	}
	return msg
}

// sleepCtx sleeps d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) {
	if d <= 0 {
		return
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-ctx.Done():
	case <-tm.C:
	}
}
