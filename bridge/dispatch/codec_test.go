package dispatch

import (
	"bytes"
	"testing"

	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	bridgev1 "bridge/proto/bridge/v1"
)

// The codec decodes every frame as proto.Unmarshal does, the body aliased.
func TestFrameCodecMatchesProto(t *testing.T) {
	head := &bridgev1.ResponseHead{Status: 200, Reason: "OK", Headers: []*bridgev1.Header{{Name: []byte("Content-Type"), Value: []byte("text/plain")}}}
	frames := []*bridgev1.ResponseFrame{
		{Head: head, Body: []byte("Hello, World!"), End: true},
		{Body: bytes.Repeat([]byte("0123456789abcdef"), 4096)},
		{End: true},
		{Head: head, End: true},
		{Error: &bridgev1.Error{Kind: "ValueError", Message: "boom", Traceback: "tb"}, End: true, Abort: true},
		{Head: head, File: &bridgev1.File{Path: "/tmp/x", Offset: 3, Length: 9}},
		{End: true, Retire: true},
		{},
	}
	c := newFrameCodec()
	for i, want := range frames {
		wire, err := proto.Marshal(want)
		if err != nil {
			t.Fatal(err)
		}
		// Split the wire bytes over several buffers, as HTTP/2 frames are.
		var data mem.BufferSlice
		for off := 0; off < len(wire); off += 7000 {
			data = append(data, mem.SliceBuffer(wire[off:min(off+7000, len(wire))]))
		}
		got := &bridgev1.ResponseFrame{Body: []byte("stale")}
		if err := c.Unmarshal(data, got); err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if !proto.Equal(got, want) {
			t.Fatalf("frame %d: got %v, want %v", i, got, want)
		}
		c.release()
	}
}

func TestFrameCodecLastBodyWinsAndUnknownFieldsPass(t *testing.T) {
	var wire []byte
	wire = protowire.AppendTag(wire, bodyField, protowire.BytesType)
	wire = protowire.AppendBytes(wire, []byte("first"))
	wire = protowire.AppendTag(wire, 99, protowire.VarintType)
	wire = protowire.AppendVarint(wire, 7)
	wire = protowire.AppendTag(wire, bodyField, protowire.BytesType)
	wire = protowire.AppendBytes(wire, []byte("second"))
	want := &bridgev1.ResponseFrame{}
	if err := proto.Unmarshal(wire, want); err != nil {
		t.Fatal(err)
	}
	got := &bridgev1.ResponseFrame{}
	if err := newFrameCodec().Unmarshal(mem.BufferSlice{mem.SliceBuffer(wire)}, got); err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(got, want) || string(got.Body) != "second" {
		t.Fatalf("got %v, want %v", got, want)
	}
}

func TestFrameCodecRejectsTruncatedFrames(t *testing.T) {
	wire, _ := proto.Marshal(&bridgev1.ResponseFrame{Body: []byte("Hello"), End: true})
	for n := 1; n < len(wire); n++ {
		if n == len(wire)-2 {
			continue // cut just before `end` (2 bytes): a valid frame without it
		}
		err := newFrameCodec().Unmarshal(mem.BufferSlice{mem.SliceBuffer(wire[:n])}, &bridgev1.ResponseFrame{})
		if err == nil {
			t.Fatalf("%d of %d bytes decoded without an error", n, len(wire))
		}
	}
}
