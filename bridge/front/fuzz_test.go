package front

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"maps"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"

	"bridge/bridge/request"
	"bridge/bridge/uwsgi"
	bridgev1 "bridge/proto/bridge/v1"
)

// The fronts' conversions to the canonical request, fed arbitrary bytes.
// Seeds: testdata/fuzz/<target>/ (run as tests by go test ./...); to fuzz,
// make fuzz or
//
//	go test -run x -fuzz FuzzHTTPCanonical -fuzztime 60s ./bridge/front

const fuzzMaxBody = 1 << 20

// checkVars holds for both fronts: every name is a CGI variable name and
// appears once, the variables every request has are there (W4, W5, W7), no
// empty CONTENT_* and no HTTP_ twin of them or of Transfer-Encoding (W6,
// U10), and CONTENT_LENGTH is the body's length in digits. The HTTP front
// writes it itself, exactly when the body is not empty; the uwsgi front
// passes on nginx's, which may be "0" or have leading zeros (W6 keeps a
// non-empty value), so for it the value need only be the length.
func checkVars(t *testing.T, req *request.Request, exactCL bool) map[string][]byte {
	t.Helper()
	vars := make(map[string][]byte, len(req.Vars))
	for _, v := range req.Vars {
		if !validName(v.Name) {
			t.Fatalf("var name %q", v.Name)
		}
		if _, dup := vars[string(v.Name)]; dup {
			t.Fatalf("var %s twice", v.Name)
		}
		vars[string(v.Name)] = v.Value
	}
	for _, name := range []string{"REQUEST_METHOD", "SERVER_PROTOCOL", "SERVER_NAME", "SERVER_PORT", "PATH_INFO"} {
		if len(vars[name]) == 0 && !(name == "PATH_INFO" && len(vars["SCRIPT_NAME"]) > 0) {
			t.Fatalf("%s missing or empty", name)
		}
	}
	for _, name := range []string{"SCRIPT_NAME", "QUERY_STRING"} {
		if _, ok := vars[name]; !ok {
			t.Fatalf("%s missing", name)
		}
	}
	for _, name := range []string{"HTTP_CONTENT_TYPE", "HTTP_CONTENT_LENGTH", "HTTP_TRANSFER_ENCODING"} {
		if _, ok := vars[name]; ok {
			t.Fatalf("%s present", name)
		}
	}
	if v, ok := vars["CONTENT_TYPE"]; ok && len(v) == 0 {
		t.Fatal("empty CONTENT_TYPE")
	}
	if v, ok := vars["CONTENT_LENGTH"]; ok {
		n, err := strconv.ParseInt(string(v), 10, 64)
		if !digits(v) || err != nil || n != req.ContentLength || exactCL && (n == 0 || string(v) != strconv.FormatInt(n, 10)) {
			t.Fatalf("CONTENT_LENGTH %q for a body of %d bytes", v, req.ContentLength)
		}
	} else if req.ContentLength != 0 {
		t.Fatalf("no CONTENT_LENGTH for a body of %d bytes", req.ContentLength)
	}
	return vars
}

// checkBody reads the body the request says it has and closes what the
// front opened for it.
func checkBody(t *testing.T, req *request.Request, spool io.Closer) {
	t.Helper()
	if spool != nil {
		defer spool.Close()
	}
	n := int64(len(req.Prefetched))
	if req.Body != nil {
		m, _ := io.Copy(io.Discard, req.Body)
		n += m
	}
	// readBody reads the whole body before dispatch: what it hands on is
	// exactly ContentLength bytes.
	if n != req.ContentLength {
		t.Fatalf("body of %d bytes, ContentLength %d", n, req.ContentLength)
	}
}

// readWhole reads a request's body as the Handler does before dispatch.
func readWhole(h *Handler, req *request.Request, body io.Reader) (io.Closer, error) {
	if req.ContentLength != 0 {
		req.Body = body
	}
	return h.readBody(req)
}

// checkError: a refused request carries a status for the client.
func checkError(t *testing.T, err error) {
	t.Helper()
	var re *request.Error
	if !errors.As(err, &re) || re.Status < 400 || re.Status > 599 {
		t.Fatalf("error without a 4xx/5xx status: %v", err)
	}
}

// headerVarName is the HTTP_ name the HTTP front gives a header.
func headerVarName(k string) string {
	return "HTTP_" + strings.ToUpper(strings.ReplaceAll(k, "-", "_"))
}

func FuzzHTTPCanonical(f *testing.F) {
	for _, s := range []string{
		"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n",
		"GET /a%2Fb/c?x=1&y HTTP/1.1\r\nHost: example.com:8080\r\nCookie: a=1\r\nCookie: b=2\r\nAccept: x\r\nAccept: y\r\n\r\n",
		"POST /form HTTP/1.1\r\nHost: h\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 7\r\n\r\na=1&b=2",
		"POST /up HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: h\r\nX_Forwarded_For: 6.6.6.6\r\nX-Forwarded-For: 1.2.3.4\r\n\r\n",
		"GET / HTTP/1.0\r\n\r\n",
		"GET http://[::1]:81/p HTTP/1.1\r\nHost: other\r\nX-Request-Id: abc-123\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	front := NewHTTP(Config{Handler: &Handler{Limits: Limits{MaxBody: fuzzMaxBody}}, ServerName: "fuzzhost"})
	f.Fuzz(func(t *testing.T, raw []byte) {
		r, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(raw)))
		if err != nil {
			return
		}
		r.RemoteAddr = "192.0.2.1:4321"
		hdr := r.Header.Clone()
		req, err := front.canonical(r)
		var spool io.Closer
		if err == nil {
			spool, err = readWhole(front.h, req, r.Body)
		}
		if err != nil {
			checkError(t, err)
			return
		}
		vars := checkVars(t, req, true)
		checkBody(t, req, spool)

		// HTTP_* are the headers, as a plain model computes them: names
		// with "_" dropped (H4), repeats joined (W8), Host from r.Host.
		ref := &refList{values: map[string]string{}}
		if r.Host != "" {
			ref.add("HTTP_HOST", r.Host)
		}
		for _, k := range slices.Sorted(maps.Keys(hdr)) {
			switch {
			case strings.Contains(k, "_"), k == "Content-Type", k == "Content-Length", k == "Host", k == "Transfer-Encoding":
				continue
			}
			for _, v := range hdr[k] {
				ref.add(headerVarName(k), v)
			}
		}
		want := ref.values
		for name, v := range vars {
			if !strings.HasPrefix(name, "HTTP_") {
				continue
			}
			w, ok := want[name]
			if !ok {
				t.Fatalf("%s=%q from no header (a name with \"_\"?)", name, v)
			}
			if string(v) != w {
				t.Fatalf("%s=%q, want %q", name, v, w)
			}
			delete(want, name)
		}
		for name := range want {
			t.Fatalf("header var %s missing", name)
		}
		if ct := hdr.Get("Content-Type"); string(vars["CONTENT_TYPE"]) != ct {
			t.Fatalf("CONTENT_TYPE %q, header %q", vars["CONTENT_TYPE"], ct)
		}
	})
}

// FuzzUwsgiCanonical takes the vars as text, a "NAME\tVALUE" line each, so
// that mutations keep them apart (raw packets are FuzzReadPacket's, in
// bridge/uwsgi), encodes them as nginx would and reads the packet back.
func FuzzUwsgiCanonical(f *testing.F) {
	for _, name := range []string{"get_plain", "post_form", "post_chunked", "repeated_headers"} {
		raw, err := os.ReadFile("../uwsgi/testdata/" + name + ".uwsgi")
		if err != nil {
			f.Fatal(err)
		}
		br := bufio.NewReader(bytes.NewReader(raw))
		p, err := uwsgi.ReadPacket(br)
		if err != nil {
			f.Fatal(err)
		}
		body, _ := io.ReadAll(br)
		var text []byte
		for _, v := range p.Vars {
			text = append(append(append(append(text, v.Name...), '\t'), v.Value...), '\n')
		}
		f.Add(text, body)
	}
	u := NewUwsgi(Config{Handler: &Handler{Limits: Limits{MaxBody: fuzzMaxBody}}, ServerName: "fuzzhost"})
	f.Fuzz(func(t *testing.T, text, body []byte) {
		var p uwsgi.Packet
		for line := range bytes.Lines(text) {
			name, value, _ := bytes.Cut(bytes.TrimSuffix(line, []byte("\n")), []byte("\t"))
			p.Vars = append(p.Vars, uwsgi.Var{Name: name, Value: value})
		}
		raw, err := uwsgi.AppendPacket(nil, &p)
		if err != nil {
			return
		}
		br := bufio.NewReader(io.MultiReader(bytes.NewReader(raw), bytes.NewReader(body)))
		pkt, err := uwsgi.ReadPacket(br)
		if err != nil {
			t.Fatalf("reading back an encoded packet: %v", err)
		}
		req, err := u.canonical(pkt)
		var spool io.Closer
		if err == nil {
			spool, err = readWhole(u.h, req, io.LimitReader(br, req.ContentLength))
		}
		if err != nil {
			checkError(t, err)
			return
		}
		checkVars(t, req, false)
		checkBody(t, req, spool)

		// HTTP_* are the packet's, merged as a plain model does (U4),
		// without the ones W6 and U10 drop, in order of first appearance.
		ref := &refList{values: map[string]string{}}
		for _, v := range pkt.Vars {
			switch name := string(v.Name); {
			case !strings.HasPrefix(name, "HTTP_"), !validName(v.Name):
			case name == "HTTP_TRANSFER_ENCODING", name == "HTTP_CONTENT_TYPE", name == "HTTP_CONTENT_LENGTH":
			default:
				ref.add(name, string(v.Value))
			}
		}
		var got []*bridgev1.Var
		for _, v := range req.Vars {
			if strings.HasPrefix(string(v.Name), "HTTP_") {
				got = append(got, v)
			}
			if strings.HasPrefix(string(v.Name), "UWSGI_") {
				t.Fatalf("magic var %s passed (U16)", v.Name)
			}
		}
		if len(got) != len(ref.names) {
			t.Fatalf("%d HTTP_ vars, want %d", len(got), len(ref.names))
		}
		for i, v := range got {
			if string(v.Name) != ref.names[i] || string(v.Value) != ref.values[ref.names[i]] {
				t.Fatalf("HTTP_ var %d: %s=%q, want %s=%q", i, v.Name, v.Value, ref.names[i], ref.values[ref.names[i]])
			}
		}
	})
}
