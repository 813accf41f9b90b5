package dispatch

import (
	"fmt"

	"google.golang.org/grpc/encoding"
	_ "google.golang.org/grpc/encoding/proto" // registers "proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	bridgev1 "bridge/proto/bridge/v1"
)

// bodyField is ResponseFrame.body's field number (proto/bridge/v1/runner.proto).
const bodyField = 2

// frameCodec is a Slot stream's codec: gRPC's own for everything, except
// that a ResponseFrame's body is not copied out of gRPC's receive buffer.
// proto.Unmarshal allocates and copies every body, which for 64 KiB
// responses was a fifth of bridge's CPU plus most of its GC work (pprof,
// bench/NOTES.md). The body stays valid until the stream's next Recv or
// release(); the exchange writes it to the client before either.
//
// One codec per stream: Recv runs on one goroutine at a time, and Send
// (another goroutine) only uses Marshal, which keeps no state.
type frameCodec struct {
	std     encoding.CodecV2
	held    mem.Buffer // backs the last frame's body
	scratch []byte     // the frame without its body, for proto.Unmarshal
}

func newFrameCodec() *frameCodec {
	return &frameCodec{std: encoding.GetCodecV2("proto")}
}

// Name keeps the stream's content-subtype "proto", as with the default codec.
func (c *frameCodec) Name() string { return "proto" }

func (c *frameCodec) Marshal(v any) (mem.BufferSlice, error) { return c.std.Marshal(v) }

func (c *frameCodec) Unmarshal(data mem.BufferSlice, v any) error {
	f, ok := v.(*bridgev1.ResponseFrame)
	if !ok {
		return c.std.Unmarshal(data, v)
	}
	c.release()
	buf := data.MaterializeToBuffer(mem.DefaultBufferPool())
	body, err := c.decode(buf.ReadOnlyData(), f)
	if err != nil || body == nil {
		buf.Free() // nothing refers to it
		return err
	}
	f.Body = body
	c.held = buf
	return nil
}

// release gives the last frame's buffer back to gRPC's pool; that frame's
// body must not be used after it.
func (c *frameCodec) release() {
	if c.held != nil {
		c.held.Free()
		c.held = nil
	}
}

// decode unmarshals b into f, all but the body through proto.Unmarshal, and
// returns the body as a slice of b (nil if the frame has none). As in
// proto, the last occurrence of the field wins.
func (c *frameCodec) decode(b []byte, f *bridgev1.ResponseFrame) ([]byte, error) {
	var body []byte
	rest := c.scratch[:0]
	for i := 0; i < len(b); {
		num, typ, n := protowire.ConsumeTag(b[i:])
		if n < 0 {
			return nil, fmt.Errorf("response frame: %w", protowire.ParseError(n))
		}
		m := protowire.ConsumeFieldValue(num, typ, b[i+n:])
		if m < 0 {
			return nil, fmt.Errorf("response frame: %w", protowire.ParseError(m))
		}
		if num == bodyField && typ == protowire.BytesType {
			v, _ := protowire.ConsumeBytes(b[i+n:])
			body = v[:len(v):len(v)]
		} else {
			rest = append(rest, b[i:i+n+m]...)
		}
		i += n + m
	}
	c.scratch = rest
	if err := proto.Unmarshal(rest, f); err != nil {
		return nil, err
	}
	if body != nil && len(body) == 0 {
		body = nil // an empty body is no body (proto3)
	}
	return body, nil
}
