package dispatch

import (
	"testing"

	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"

	bridgev1 "bridge/proto/bridge/v1"
)

// FuzzFrameCodec: the Slot codec decodes any bytes as proto.Unmarshal does
// (the same frame or an error for both, never a panic), whether gRPC hands
// them over in one buffer or two (split), and what it encodes decodes back
// equal, for both directions' frames. Seeds: testdata/fuzz/FuzzFrameCodec.
//
//	go test -run x -fuzz FuzzFrameCodec -fuzztime 60s ./bridge/dispatch
func FuzzFrameCodec(f *testing.F) {
	head := &bridgev1.ResponseHead{Status: 200, Reason: "OK", Headers: []*bridgev1.Header{{Name: []byte("Content-Type"), Value: []byte("text/plain")}}}
	for _, m := range []proto.Message{
		&bridgev1.ResponseFrame{Head: head, Body: []byte("Hello, World!"), End: true},
		&bridgev1.ResponseFrame{Error: &bridgev1.Error{Kind: "ValueError", Message: "boom"}, End: true, Abort: true},
		&bridgev1.RequestFrame{Head: &bridgev1.RequestHead{Vars: []*bridgev1.Var{{Name: []byte("REQUEST_METHOD"), Value: []byte("GET")}}}, End: true},
	} {
		b, err := proto.Marshal(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, uint16(len(b)/2))
	}
	f.Fuzz(func(t *testing.T, data []byte, split uint16) {
		c := newFrameCodec()
		defer c.release()
		at := int(split) % (len(data) + 1)
		in := mem.BufferSlice{mem.SliceBuffer(data[:at:at]), mem.SliceBuffer(data[at:])}

		// Arbitrary bytes: the codec agrees with proto.
		want := &bridgev1.ResponseFrame{}
		wantErr := proto.Unmarshal(data, want)
		got := &bridgev1.ResponseFrame{}
		err := c.Unmarshal(in, got)
		if (err == nil) != (wantErr == nil) {
			t.Fatalf("codec: %v, proto: %v", err, wantErr)
		}
		if err != nil {
			return
		}
		if !proto.Equal(got, want) {
			t.Fatalf("codec decoded %v, proto %v", got, want)
		}

		// Round trips: a response frame through the codec both ways, and
		// a request frame (the bytes read as one) as bridge sends it.
		roundTrip(t, c, want, &bridgev1.ResponseFrame{})
		req := &bridgev1.RequestFrame{}
		if proto.Unmarshal(data, req) == nil {
			roundTrip(t, c, req, &bridgev1.RequestFrame{})
		}
	})
}

func roundTrip(t *testing.T, c *frameCodec, m, into proto.Message) {
	t.Helper()
	enc, err := c.Marshal(m)
	if err != nil {
		t.Fatalf("marshal %v: %v", m, err)
	}
	defer enc.Free()
	if err := c.Unmarshal(enc, into); err != nil {
		t.Fatalf("unmarshal what the codec encoded (%v): %v", m, err)
	}
	if !proto.Equal(into, m) {
		t.Fatalf("round trip: %v became %v", m, into)
	}
	c.release() // into's body aliases enc, freed on return
}
