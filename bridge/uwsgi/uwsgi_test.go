package uwsgi

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"testing/iotest"
)

// readers are the ways a packet reaches ReadPacket in these tests. Every
// golden and malformed case must give the same result through each of them:
// nginx may deliver a packet in any number of TCP segments.
var readers = []struct {
	name string
	wrap func([]byte) *bufio.Reader
}{
	{"whole", func(b []byte) *bufio.Reader { return bufio.NewReader(bytes.NewReader(b)) }},
	{"byte-by-byte", func(b []byte) *bufio.Reader {
		return bufio.NewReaderSize(iotest.OneByteReader(bytes.NewReader(b)), 16)
	}},
	{"half", func(b []byte) *bufio.Reader {
		return bufio.NewReaderSize(iotest.HalfReader(bytes.NewReader(b)), 16)
	}},
	{"data+EOF", func(b []byte) *bufio.Reader {
		return bufio.NewReaderSize(iotest.DataErrReader(bytes.NewReader(b)), 16)
	}},
}

// kv builds a Var from strings, for readable tables.
func kv(name, value string) Var { return Var{Name: []byte(name), Value: []byte(value)} }

// goldenCases are hand-written facts about each capture, independent of the
// .json files (which record everything, but were produced by this codec).
// has lists vars that must appear in this relative order; absent lists
// names that must not appear at all.
var goldenCases = []struct {
	name       string
	mod1, mod2 uint8
	nvars      int
	has        []Var
	absent     []string
	body       string
}{
	{name: "get_query", nvars: 17, has: []Var{
		kv("QUERY_STRING", "q=go+lang&page=2"), kv("REQUEST_METHOD", "GET"),
		kv("CONTENT_TYPE", ""), kv("CONTENT_LENGTH", ""),
		kv("REQUEST_URI", "/search?q=go+lang&page=2"), kv("PATH_INFO", "/search"),
		kv("SERVER_PROTOCOL", "HTTP/1.1"), kv("REQUEST_SCHEME", "http"), kv("REMOTE_ADDR", "127.0.0.1"),
		kv("SERVER_NAME", "127.0.0.1"), kv("HTTP_HOST", "127.0.0.1"), // U6: $host, port stripped
		kv("HTTP_USER_AGENT", "capture/1"), kv("HTTP_ACCEPT", "*/*"), kv("HTTP_CONNECTION", "close"),
	}, absent: []string{"HTTPS", "SCRIPT_NAME", "SERVER_ADDR"}},
	{name: "get_plain", nvars: 15, has: []Var{
		kv("QUERY_STRING", ""), kv("CONTENT_TYPE", ""), kv("CONTENT_LENGTH", ""), kv("PATH_INFO", "/"),
	}, absent: []string{"HTTPS", "HTTP_CONTENT_LENGTH"}},
	{name: "post_form", nvars: 17, has: []Var{
		kv("REQUEST_METHOD", "POST"), kv("CONTENT_TYPE", "application/x-www-form-urlencoded"),
		kv("CONTENT_LENGTH", "22"), kv("HTTP_CONTENT_TYPE", "application/x-www-form-urlencoded"),
		kv("HTTP_CONTENT_LENGTH", "22"),
	}, body: "name=caf%C3%A9&x=1&y=2"},
	{name: "post_chunked", nvars: 17, has: []Var{
		kv("CONTENT_TYPE", "text/plain"), kv("CONTENT_LENGTH", "11"), // U10: de-chunked size
		kv("HTTP_TRANSFER_ENCODING", "chunked"), // ...and still forwarded
	}, absent: []string{"HTTP_CONTENT_LENGTH"}, body: "hello world"},
	{name: "repeated_headers", nvars: 19, has: []Var{
		// U4: nginx 1.22 sends one var per line, in client order.
		kv("HTTP_X_FOO", "a"), kv("HTTP_COOKIE", "a=1"), kv("HTTP_X_FOO", "b"), kv("HTTP_COOKIE", "b=2"),
	}, absent: []string{"HTTP_X_UNDER", "HTTP_X_Under"}}, // U5: underscore header dropped
	{name: "long_header", nvars: 16, has: []Var{
		kv("HTTP_X_LONG", strings.Repeat("0123456789abcdef", 500)),
	}},
	{name: "percent_path", nvars: 15, has: []Var{
		kv("QUERY_STRING", "x=%2F"), kv("REQUEST_URI", "/caf%C3%A9?x=%2F"), kv("PATH_INFO", "/caf\xc3\xa9"),
	}},
	{name: "head", nvars: 15, has: []Var{
		kv("QUERY_STRING", "x=1"), kv("REQUEST_METHOD", "HEAD"), kv("PATH_INFO", "/head"),
	}},
	{name: "normalize", nvars: 15, has: []Var{
		// U12: PATH_INFO is decoded and normalized; %2F becomes a real slash.
		kv("REQUEST_URI", "//a/./b/../c%2Fd"), kv("PATH_INFO", "/a/c/d"),
	}},
	{name: "modifiers", mod1: 5, mod2: 9, nvars: 15, has: []Var{kv("PATH_INFO", "/mod/x")}},
	{name: "expect_continue", nvars: 17, has: []Var{
		kv("REQUEST_METHOD", "PUT"), kv("CONTENT_LENGTH", "4"), kv("HTTP_EXPECT", "100-continue"), // U28
	}, body: "data"},
	{name: "http10_nohost", nvars: 14, has: []Var{
		kv("SERVER_PROTOCOL", "HTTP/1.0"), kv("HTTP_HOST", "127.0.0.1"), // $host falls back to server_name
	}, absent: []string{"HTTP_CONNECTION"}},
}

func loadGolden(t testing.TB, name string) (raw []byte, g *golden) {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("testdata", name+".uwsgi"))
	if err != nil {
		t.Fatal(err)
	}
	js, err := os.ReadFile(filepath.Join("testdata", name+".json"))
	if err != nil {
		t.Fatal(err)
	}
	g = new(golden)
	if err := json.Unmarshal(js, g); err != nil {
		t.Fatalf("%s.json: %v", name, err)
	}
	return raw, g
}

func TestGolden(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join("testdata", "*.uwsgi"))
	if len(files) != len(goldenCases) {
		t.Errorf("testdata has %d .uwsgi files, table has %d cases", len(files), len(goldenCases))
	}
	for _, tc := range goldenCases {
		raw, g := loadGolden(t, tc.name)
		want, err := g.decode()
		if err != nil {
			t.Fatalf("%s.json: %v", tc.name, err)
		}
		for _, rd := range readers {
			t.Run(tc.name+"/"+rd.name, func(t *testing.T) {
				br := rd.wrap(raw)
				p, err := ReadPacket(br)
				if err != nil {
					t.Fatalf("ReadPacket: %v", err)
				}
				body, err := io.ReadAll(br)
				if err != nil {
					t.Fatal(err)
				}

				// The whole capture, as recorded.
				if p.Modifier1 != g.Modifier1 || p.Modifier2 != g.Modifier2 {
					t.Errorf("modifiers = %d/%d, golden %d/%d", p.Modifier1, p.Modifier2, g.Modifier1, g.Modifier2)
				}
				if !equalVars(p.Vars, want) {
					t.Errorf("vars differ from %s.json:\n got %s\nwant %s", tc.name, fmtVars(p.Vars), fmtVars(want))
				}
				if string(body) != g.Body {
					t.Errorf("body = %q, golden %q", body, g.Body)
				}

				// Hand-written facts.
				if p.Modifier1 != tc.mod1 || p.Modifier2 != tc.mod2 {
					t.Errorf("modifiers = %d/%d, want %d/%d", p.Modifier1, p.Modifier2, tc.mod1, tc.mod2)
				}
				if len(p.Vars) != tc.nvars {
					t.Errorf("%d vars, want %d", len(p.Vars), tc.nvars)
				}
				if i := subsequence(p.Vars, tc.has); i >= 0 {
					t.Errorf("var %q=%.40q missing or out of order in %s", tc.has[i].Name, tc.has[i].Value, fmtVars(p.Vars))
				}
				for _, name := range tc.absent {
					if _, ok := p.Lookup(name); ok {
						t.Errorf("%s present, want absent", name)
					}
				}
				// U9: the body is exactly CONTENT_LENGTH bytes after the vars.
				if string(body) != tc.body {
					t.Errorf("body = %q, want %q", body, tc.body)
				}
				cl, _ := p.Lookup("CONTENT_LENGTH")
				if n, _ := strconv.Atoi(string(cl)); n != len(body) {
					t.Errorf("CONTENT_LENGTH %q but %d body bytes follow the vars", cl, len(body))
				}
				// datasize counts the vars block only (U1).
				if ds := int(binary.LittleEndian.Uint16(raw[1:3])); HeaderSize+ds+len(body) != len(raw) {
					t.Errorf("datasize %d + header + body %d != %d bytes captured", ds, len(body), len(raw))
				}
			})
		}
	}
}

// TestGoldenBackToBack checks ReadPacket stops exactly at the end of the
// vars block: a second packet on the same stream must parse intact, and
// then the stream must report a clean io.EOF.
func TestGoldenBackToBack(t *testing.T) {
	a, _ := loadGolden(t, "get_query")
	b, _ := loadGolden(t, "modifiers")
	for _, rd := range readers {
		br := rd.wrap(append(append([]byte{}, a...), b...))
		p1, err1 := ReadPacket(br)
		p2, err2 := ReadPacket(br)
		_, err3 := ReadPacket(br)
		if err1 != nil || err2 != nil {
			t.Fatalf("%s: %v, %v", rd.name, err1, err2)
		}
		if v, _ := p1.Lookup("PATH_INFO"); string(v) != "/search" {
			t.Errorf("%s: first PATH_INFO %q", rd.name, v)
		}
		if v, _ := p2.Lookup("PATH_INFO"); string(v) != "/mod/x" || p2.Modifier1 != 5 {
			t.Errorf("%s: second PATH_INFO %q modifier1 %d", rd.name, v, p2.Modifier1)
		}
		if err3 != io.EOF {
			t.Errorf("%s: third read: %v, want io.EOF", rd.name, err3)
		}
	}
}

// hdr builds a packet header.
func hdr(m1 uint8, size uint16, m2 uint8) []byte {
	return []byte{m1, byte(size), byte(size >> 8), m2}
}

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

// entry encodes one var with explicit lengths, so tests can lie about them.
func entry(klen int, key string, vlen int, val string) []byte {
	b := binary.LittleEndian.AppendUint16(nil, uint16(klen))
	b = append(b, key...)
	b = binary.LittleEndian.AppendUint16(b, uint16(vlen))
	return append(b, val...)
}

var errBoom = errors.New("boom")

func TestReadPacketErrors(t *testing.T) {
	good := entry(4, "PATH", 1, "/")
	tests := []struct {
		name    string
		in      []byte
		wantErr error // nil: must parse
		vars    []Var
		rest    string // bytes left in the reader after a successful parse
	}{
		{name: "empty stream", in: nil, wantErr: io.EOF},
		{name: "header 1 byte", in: []byte{0}, wantErr: io.ErrUnexpectedEOF},
		{name: "header 3 bytes", in: []byte{0, 8, 0}, wantErr: io.ErrUnexpectedEOF},
		{name: "datasize larger than data", in: cat(hdr(0, uint16(len(good)+1), 0), good), wantErr: io.ErrUnexpectedEOF},
		{name: "datasize but no data", in: hdr(0, 10, 0), wantErr: io.ErrUnexpectedEOF},
		{name: "datasize max, no data", in: hdr(0, 0xFFFF, 0), wantErr: io.ErrUnexpectedEOF},
		{name: "key length past end", in: cat(hdr(0, 5, 0), []byte{10, 0, 'a', 'b', 'c'}), wantErr: ErrMalformed},
		{name: "value length past end", in: cat(hdr(0, 7, 0), entry(1, "K", 9, "ab")), wantErr: ErrMalformed},
		{name: "value length missing", in: cat(hdr(0, 3, 0), []byte{1, 0, 'K'}), wantErr: ErrMalformed},
		{name: "value length half", in: cat(hdr(0, 4, 0), []byte{1, 0, 'K', 0}), wantErr: ErrMalformed},
		{name: "leftover byte", in: cat(hdr(0, uint16(len(good)+1), 0), good, []byte{0}), wantErr: ErrMalformed},
		{name: "only a key length", in: cat(hdr(0, 2, 0), []byte{0, 0}), wantErr: ErrMalformed},
		{name: "single byte block", in: cat(hdr(0, 1, 0), []byte{0}), wantErr: ErrMalformed},
		{name: "max length key in short block", in: cat(hdr(0, 4, 0), []byte{0xFF, 0xFF, 0, 0}), wantErr: ErrMalformed},
		{name: "zero-length packet", in: hdr(7, 0, 3), rest: ""},
		{name: "zero-length packet then body", in: cat(hdr(0, 0, 0), []byte("body")), rest: "body"},
		{name: "empty key and value", in: cat(hdr(0, 4, 0), entry(0, "", 0, "")), vars: []Var{kv("", "")}},
		{name: "one var then body", in: cat(hdr(0, uint16(len(good)), 0), good, []byte("xyz")), vars: []Var{kv("PATH", "/")}, rest: "xyz"},
		{name: "binary key and value", in: cat(hdr(0, 8, 0), entry(2, "\x00\xff", 2, "\r\n")), vars: []Var{kv("\x00\xff", "\r\n")}},
	}
	for _, tc := range tests {
		for _, rd := range readers {
			t.Run(tc.name+"/"+rd.name, func(t *testing.T) {
				br := rd.wrap(tc.in)
				p, err := ReadPacket(br)
				if tc.wantErr != nil {
					if !errors.Is(err, tc.wantErr) {
						t.Fatalf("err = %v, want %v", err, tc.wantErr)
					}
					if p != nil {
						t.Errorf("packet %+v returned with error", p)
					}
					// The three classes must stay distinct so the caller can
					// tell "nothing sent" from "cut short" from "garbage".
					for _, other := range []error{io.EOF, io.ErrUnexpectedEOF, ErrMalformed} {
						if other != tc.wantErr && errors.Is(err, other) {
							t.Errorf("err %v also matches %v", err, other)
						}
					}
					return
				}
				if err != nil {
					t.Fatalf("ReadPacket: %v", err)
				}
				if !equalVars(p.Vars, tc.vars) {
					t.Errorf("vars %s, want %s", fmtVars(p.Vars), fmtVars(tc.vars))
				}
				rest, _ := io.ReadAll(br)
				if string(rest) != tc.rest {
					t.Errorf("left %q in reader, want %q", rest, tc.rest)
				}
			})
		}
	}
}

// failAfter returns its data, then err instead of io.EOF: a connection
// reset or deadline in the middle of a packet.
type failAfter struct {
	r   io.Reader
	err error
}

func (f *failAfter) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	if err == io.EOF {
		err = f.err
	}
	return n, err
}

func TestReadPacketReaderError(t *testing.T) {
	good := cat(hdr(0, 7, 0), entry(1, "K", 2, "vv"))
	for _, cut := range []int{0, 2, 4, 6} {
		br := bufio.NewReaderSize(&failAfter{bytes.NewReader(good[:cut]), errBoom}, 16)
		_, err := ReadPacket(br)
		if !errors.Is(err, errBoom) {
			t.Errorf("cut at %d: err = %v, want wrapped %v", cut, err, errBoom)
		}
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, ErrMalformed) {
			t.Errorf("cut at %d: reader error %v misreported as a protocol error", cut, err)
		}
	}
}

// TestVarsCapped checks Name and Value slices are capped: appending to one
// must reallocate rather than overwrite the next bytes of the shared block.
func TestVarsCapped(t *testing.T) {
	raw, _ := loadGolden(t, "get_query")
	p, err := ReadPacket(bufio.NewReader(bytes.NewReader(raw)))
	if err != nil {
		t.Fatal(err)
	}
	_ = append(p.Vars[0].Name, "XXXXXXXX"...)
	_ = append(p.Vars[0].Value, "XXXXXXXX"...)
	if string(p.Vars[0].Value) != "q=go+lang&page=2" || string(p.Vars[1].Name) != "REQUEST_METHOD" {
		t.Errorf("append clobbered neighbours: %s", fmtVars(p.Vars[:2]))
	}
}

func TestLookup(t *testing.T) {
	p := &Packet{Vars: []Var{kv("A", "1"), kv("B", ""), kv("A", "2")}}
	tests := []struct {
		name, want string
		ok         bool
	}{
		{"A", "2", true}, // last occurrence wins (U4)
		{"B", "", true},  // present but empty is not absent (U8)
		{"C", "", false},
		{"a", "", false}, // names are case-sensitive bytes
	}
	for _, tc := range tests {
		v, ok := p.Lookup(tc.name)
		if string(v) != tc.want || ok != tc.ok {
			t.Errorf("Lookup(%q) = %q, %v; want %q, %v", tc.name, v, ok, tc.want, tc.ok)
		}
	}
}

func TestRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		p    Packet
	}{
		{"no vars", Packet{Modifier1: 0, Modifier2: 0}},
		{"modifiers", Packet{Modifier1: 255, Modifier2: 1, Vars: []Var{kv("K", "V")}}},
		{"empty values", Packet{Vars: []Var{kv("CONTENT_TYPE", ""), kv("CONTENT_LENGTH", ""), kv("", "")}}},
		{"duplicates kept in order", Packet{Vars: []Var{kv("HTTP_X", "1"), kv("HTTP_Y", "2"), kv("HTTP_X", "3")}}},
		{"binary", Packet{Vars: []Var{kv("\x00\x01", "\xff\xfe\r\n")}}},
		{"max key", Packet{Vars: []Var{{Name: bytes.Repeat([]byte("k"), MaxDataSize-4)}}}},
		{"max block", Packet{Vars: []Var{kv("A", "B"), {Name: []byte("V"), Value: bytes.Repeat([]byte("v"), MaxDataSize-6-5)}}}},
	}
	for _, tc := range tests {
		for _, rd := range readers {
			t.Run(tc.name+"/"+rd.name, func(t *testing.T) {
				prefix := []byte("prefix")
				enc, err := AppendPacket(prefix, &tc.p)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.HasPrefix(enc, prefix) {
					t.Fatalf("AppendPacket lost dst prefix")
				}
				p, err := ReadPacket(rd.wrap(enc[len(prefix):]))
				if err != nil {
					t.Fatal(err)
				}
				if p.Modifier1 != tc.p.Modifier1 || p.Modifier2 != tc.p.Modifier2 || !equalVars(p.Vars, tc.p.Vars) {
					t.Errorf("round trip: got %d/%d %s, want %d/%d %s", p.Modifier1, p.Modifier2, fmtVars(p.Vars),
						tc.p.Modifier1, tc.p.Modifier2, fmtVars(tc.p.Vars))
				}
			})
		}
	}
	// Golden packets re-encode to the exact bytes nginx sent.
	for _, tc := range goldenCases {
		raw, _ := loadGolden(t, tc.name)
		p, err := ReadPacket(bufio.NewReader(bytes.NewReader(raw)))
		if err != nil {
			t.Fatal(err)
		}
		enc, err := AppendPacket(nil, p)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(enc, raw[:len(enc)]) || len(raw)-len(enc) != len(tc.body) {
			t.Errorf("%s: re-encoding differs from nginx's bytes", tc.name)
		}
	}
}

func TestAppendPacketTooLarge(t *testing.T) {
	big := bytes.Repeat([]byte("x"), MaxDataSize+1)
	tests := []struct {
		name string
		vars []Var
	}{
		{"key over u16", []Var{{Name: big}}},
		{"value over u16", []Var{{Name: []byte("K"), Value: big}}},
		{"block one byte over", []Var{kv("A", "B"), {Name: []byte("V"), Value: bytes.Repeat([]byte("v"), MaxDataSize-6-5+1)}}},
		{"many small vars", func() []Var {
			vs := make([]Var, 20000) // 20000 * 4 bytes of lengths alone
			return vs
		}()},
	}
	for _, tc := range tests {
		dst := []byte("keep")
		out, err := AppendPacket(dst, &Packet{Vars: tc.vars})
		if !errors.Is(err, ErrTooLarge) {
			t.Errorf("%s: err = %v, want ErrTooLarge", tc.name, err)
		}
		if string(out) != "keep" {
			t.Errorf("%s: dst changed to %d bytes on error", tc.name, len(out))
		}
	}
}

func TestAppendResponseHead(t *testing.T) {
	h := func(n, v string) Header { return Header{Name: []byte(n), Value: []byte(v)} }
	tests := []struct {
		name    string
		status  int
		reason  string
		headers []Header
		want    string
	}{
		{"no headers", 204, "No Content", nil, "HTTP/1.1 204 No Content\r\n\r\n"},
		{"empty reason keeps the space", 299, "", nil, "HTTP/1.1 299 \r\n\r\n"},
		{"order and repeats kept, case as given", 200, "OK",
			[]Header{h("Content-Type", "text/plain"), h("set-cookie", "a=1"), h("Set-Cookie", "b=2"), h("Content-Length", "5")},
			"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nset-cookie: a=1\r\nSet-Cookie: b=2\r\nContent-Length: 5\r\n\r\n"},
		{"empty value", 404, "Not Found", []Header{h("X-Empty", "")}, "HTTP/1.1 404 Not Found\r\nX-Empty: \r\n\r\n"},
		{"custom reason", 599, "Network Connect Timeout Error", nil, "HTTP/1.1 599 Network Connect Timeout Error\r\n\r\n"},
	}
	for _, tc := range tests {
		got := AppendResponseHead([]byte("pre"), tc.status, tc.reason, tc.headers)
		if string(got) != "pre"+tc.want {
			t.Errorf("%s:\n got %q\nwant %q", tc.name, got, "pre"+tc.want)
		}
	}
}

func TestAppendResponseHeadNoAlloc(t *testing.T) {
	headers := []Header{{Name: []byte("Content-Type"), Value: []byte("text/html; charset=utf-8")}, {Name: []byte("Content-Length"), Value: []byte("12345")}}
	buf := make([]byte, 0, 256)
	allocs := testing.AllocsPerRun(100, func() {
		buf = AppendResponseHead(buf[:0], 200, "OK", headers)
	})
	if allocs != 0 {
		t.Errorf("AppendResponseHead with room in dst: %v allocs, want 0", allocs)
	}
}

func TestReadPacketAllocs(t *testing.T) {
	raw, _ := loadGolden(t, "get_query")
	rd := bytes.NewReader(raw)
	br := bufio.NewReader(rd)
	allocs := testing.AllocsPerRun(100, func() {
		rd.Reset(raw)
		br.Reset(rd)
		if _, err := ReadPacket(br); err != nil {
			t.Fatal(err)
		}
	})
	// Packet, block and Vars: constant, whatever the number of vars.
	if allocs > 3 {
		t.Errorf("ReadPacket: %v allocs per packet, want <= 3", allocs)
	}
}

func FuzzReadPacket(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "*.uwsgi"))
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{})
	f.Add(hdr(0, 0, 0))
	f.Add(cat(hdr(0, 5, 0), []byte{10, 0, 'a', 'b', 'c'}))
	f.Add(cat(hdr(0, 7, 0), entry(1, "K", 2, "vv"), []byte{0}))
	f.Fuzz(func(t *testing.T, data []byte) {
		br := bufio.NewReader(bytes.NewReader(data))
		p, err := ReadPacket(br)
		p1, err1 := ReadPacket(bufio.NewReaderSize(iotest.OneByteReader(bytes.NewReader(data)), 16))
		if (err == nil) != (err1 == nil) {
			t.Fatalf("whole: %v, byte-by-byte: %v", err, err1)
		}
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, ErrMalformed) {
				t.Fatalf("unexpected error class: %v", err)
			}
			if errors.Is(err, ErrMalformed) != errors.Is(err1, ErrMalformed) {
				t.Fatalf("whole: %v, byte-by-byte: %v", err, err1)
			}
			return
		}
		if !equalVars(p.Vars, p1.Vars) {
			t.Fatalf("whole and byte-by-byte disagree")
		}
		consumed := HeaderSize + int(binary.LittleEndian.Uint16(data[1:3]))
		rest, _ := io.ReadAll(br)
		if !bytes.Equal(rest, data[consumed:]) {
			t.Fatalf("ReadPacket consumed %d bytes, want %d", len(data)-len(rest), consumed)
		}
		// The encoding is canonical: re-encoding gives the same bytes.
		enc, err := AppendPacket(nil, p)
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		if !bytes.Equal(enc, data[:consumed]) {
			t.Fatalf("re-encoding differs:\n got %x\nwant %x", enc, data[:consumed])
		}
		p2, err := ReadPacket(bufio.NewReader(bytes.NewReader(enc)))
		if err != nil {
			t.Fatalf("re-read: %v", err)
		}
		if p2.Modifier1 != p.Modifier1 || p2.Modifier2 != p.Modifier2 || !equalVars(p2.Vars, p.Vars) {
			t.Fatalf("re-read differs")
		}
	})
}

func BenchmarkReadPacket(b *testing.B) {
	raw, _ := loadGolden(b, "get_query")
	rd := bytes.NewReader(raw)
	br := bufio.NewReader(rd)
	b.SetBytes(int64(len(raw)))
	b.ReportAllocs()
	for b.Loop() {
		rd.Reset(raw)
		br.Reset(rd)
		if _, err := ReadPacket(br); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAppendResponseHead(b *testing.B) {
	headers := []Header{{Name: []byte("Content-Type"), Value: []byte("text/html; charset=utf-8")}, {Name: []byte("Content-Length"), Value: []byte("12345")}}
	buf := make([]byte, 0, 256)
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendResponseHead(buf[:0], 200, "OK", headers)
	}
}

func equalVars(a, b []Var) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !bytes.Equal(a[i].Name, b[i].Name) || !bytes.Equal(a[i].Value, b[i].Value) {
			return false
		}
	}
	return true
}

// subsequence returns -1 if want appears in vars in order, else the index
// of the first var of want that could not be matched.
func subsequence(vars, want []Var) int {
	j := 0
	for _, v := range vars {
		if j < len(want) && bytes.Equal(v.Name, want[j].Name) && bytes.Equal(v.Value, want[j].Value) {
			j++
		}
	}
	if j == len(want) {
		return -1
	}
	return j
}

func fmtVars(vs []Var) string {
	var sb strings.Builder
	sb.WriteByte('[')
	for i, v := range vs {
		if i > 0 {
			sb.WriteByte(' ')
		}
		val := v.Value
		if len(val) > 40 {
			val = val[:40]
		}
		sb.WriteString(strconv.Quote(string(v.Name)) + "=" + strconv.Quote(string(val)))
	}
	sb.WriteByte(']')
	return sb.String()
}
