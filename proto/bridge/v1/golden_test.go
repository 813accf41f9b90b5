package bridgev1_test

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"os"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	bridgev1 "bridge/proto/bridge/v1"
)

// The Perl shim's hand-written codec is checked against golden encodings
// (perl/t/fixtures/proto_golden.txt, made by Python's protobuf runtime).
// Here Go's generated code must decode every golden message and encode it
// back to the same bytes, so all three implementations agree on the wire.
func TestGoldenEncodingsRoundTrip(t *testing.T) {
	f, err := os.Open("../../../perl/t/fixtures/proto_golden.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	newMsg := map[string]func() proto.Message{
		"RequestFrame":     func() proto.Message { return &bridgev1.RequestFrame{} },
		"ResponseFrame":    func() proto.Message { return &bridgev1.ResponseFrame{} },
		"DescribeResponse": func() proto.Message { return &bridgev1.DescribeResponse{} },
		"DescribeRequest":  func() proto.Message { return &bridgev1.DescribeRequest{} },
		"RequestHead":      func() proto.Message { return &bridgev1.RequestHead{} },
		"ResponseHead":     func() proto.Message { return &bridgev1.ResponseHead{} },
	}
	n := 0
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<24)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fields := strings.Fields(line)
		if len(fields) != 3 {
			t.Fatalf("bad golden line %q", line)
		}
		mk, ok := newMsg[fields[0]]
		if !ok {
			t.Fatalf("golden line for unknown message %s", fields[0])
		}
		if fields[2] == "-" { // the empty message encodes to no bytes
			fields[2] = ""
		}
		want, err := hex.DecodeString(fields[2])
		if err != nil {
			t.Fatalf("%s %s: %v", fields[0], fields[1], err)
		}
		m := mk()
		if err := proto.Unmarshal(want, m); err != nil {
			t.Errorf("%s %s: Go cannot decode: %v", fields[0], fields[1], err)
			continue
		}
		got, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s %s: Go encodes\n%x\nwant\n%x", fields[0], fields[1], got, want)
		}
		n++
	}
	if n < 10 {
		t.Fatalf("only %d golden messages checked", n)
	}
	t.Logf("%d golden messages round-trip through Go", n)
}
