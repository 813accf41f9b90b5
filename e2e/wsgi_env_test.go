package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
)

// envDump is what the conformance app's /env route answers.
type envDump struct {
	EnvironType string            `json:"environ_type"`
	Types       map[string]string `json:"types"`
	Vars        map[string]any    `json:"vars"`
}

// latin1 maps each code point of a WSGI "native string" back to its byte
// (W2); ok is false if one is above U+00FF.
func latin1(s string) (string, bool) {
	b := make([]byte, 0, len(s))
	for _, r := range s {
		if r > 0xff {
			return "", false
		}
		b = append(b, byte(r))
	}
	return string(b), true
}

func fetchEnv(t *testing.T, f front, method, path string, body []byte, hdr http.Header) (envDump, result) {
	t.Helper()
	r := request(t, f, method, path, body, hdr)
	var d envDump
	if r.status != 200 || r.bodyErr != nil {
		t.Fatalf("%s %s: %d %q (%v)", method, path, r.status, r.body, r.bodyErr)
	}
	if err := json.Unmarshal(r.body, &d); err != nil {
		t.Fatalf("%s %s: bad JSON %q: %v", method, path, r.body, err)
	}
	return d, r
}

// testEnviron checks W1–W8, W10, W12 and G19 on environ dumps.
func testEnviron(t *testing.T, fx *fixture) {
	cases := []struct {
		name   string
		method string
		path   string
		body   string
		hdr    http.Header
		want   map[string]string // CGI key → expected bytes
		absent []string
	}{
		{name: "W2_W4_utf8_path", path: "/env/caf%C3%A9",
			want: map[string]string{"PATH_INFO": "/env/caf\xc3\xa9", "SCRIPT_NAME": "", "REQUEST_URI": "/env/caf%C3%A9"}},
		{name: "W4_decoded_once", path: "/env/foo/bar%252cbaz",
			want: map[string]string{"PATH_INFO": "/env/foo/bar%2cbaz", "REQUEST_URI": "/env/foo/bar%252cbaz"}},
		{name: "W4_space", path: "/env/a%20b",
			want: map[string]string{"PATH_INFO": "/env/a b"}},
		{name: "W5_query_raw", path: "/env?a=%20b&c=d%2F&e",
			want: map[string]string{"PATH_INFO": "/env", "QUERY_STRING": "a=%20b&c=d%2F&e", "REQUEST_URI": "/env?a=%20b&c=d%2F&e"}},
		{name: "W5_no_query", path: "/env",
			want: map[string]string{"QUERY_STRING": ""}},
		{name: "W2_header_latin1", path: "/env", hdr: http.Header{"X-Latin": {"caf\xe9"}},
			want: map[string]string{"HTTP_X_LATIN": "caf\xe9"}},
		{name: "W8_repeated_headers", path: "/env",
			hdr:  http.Header{"X-Multi": {"a", "b"}, "Cookie": {"a=1", "b=2"}},
			want: map[string]string{"HTTP_X_MULTI": "a, b", "HTTP_COOKIE": "a=1; b=2"}},
		{name: "W6_get", path: "/env",
			absent: []string{"CONTENT_TYPE", "CONTENT_LENGTH"}},
		{name: "W6_post", method: http.MethodPost, path: "/env", body: "abc",
			hdr:  http.Header{"Content-Type": {"text/plain"}},
			want: map[string]string{"CONTENT_TYPE": "text/plain", "CONTENT_LENGTH": "3", "REQUEST_METHOD": "POST"}},
		{name: "W3_method_case", method: "PATCH", path: "/env",
			want: map[string]string{"REQUEST_METHOD": "PATCH"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			forFronts(t, fx.fronts, nil, func(t *testing.T, f front) {
				method := c.method
				if method == "" {
					method = http.MethodGet
				}
				var body []byte
				if c.body != "" {
					body = []byte(c.body)
				}
				d, r := fetchEnv(t, f, method, c.path, body, c.hdr)
				checkEnvCommon(t, d, method, r.reqID)
				for k, want := range c.want {
					s, ok := d.Vars[k].(string)
					if !ok {
						t.Errorf("%s: missing or not a str (%v, type %s)", k, d.Vars[k], d.Types[k])
						continue
					}
					got, ok := latin1(s)
					if !ok || got != want {
						t.Errorf("%s = %q (latin-1 bytes %q), want bytes %q (W2)", k, s, got, want)
					}
				}
				for _, k := range c.absent {
					if v, ok := d.Types[k]; ok {
						t.Errorf("%s present (%s %v), want absent (W6)", k, v, d.Vars[k])
					}
				}
			})
		})
	}
}

// checkEnvCommon holds for every request.
func checkEnvCommon(t *testing.T, d envDump, method, reqID string) {
	t.Helper()
	if d.EnvironType != "dict" {
		t.Errorf("type(environ) = %s, want dict (W1)", d.EnvironType)
	}
	for k, ty := range d.Types {
		if !strings.Contains(k, ".") && ty != "str" {
			t.Errorf("CGI key %s has type %s, want str (W2)", k, ty)
		}
	}
	str := func(k string) string { s, _ := d.Vars[k].(string); return s }
	if got := str("REQUEST_METHOD"); got != method {
		t.Errorf("REQUEST_METHOD = %q, want %q (W3)", got, method)
	}
	if v, ok := d.Vars["SCRIPT_NAME"]; !ok || v != "" {
		t.Errorf("SCRIPT_NAME = %#v (present %v), want '' (W4)", v, ok)
	}
	if p := str("PATH_INFO"); !strings.HasPrefix(p, "/") {
		t.Errorf("PATH_INFO = %q, want it to start with / (W4)", p)
	}
	if _, ok := d.Vars["QUERY_STRING"]; !ok {
		t.Error("QUERY_STRING missing (W5)")
	}
	for _, k := range []string{"HTTP_CONTENT_TYPE", "HTTP_CONTENT_LENGTH", "HTTP_TRANSFER_ENCODING"} {
		if _, ok := d.Types[k]; ok {
			t.Errorf("%s present, want absent (W6, W8)", k)
		}
	}
	if str("SERVER_NAME") == "" || str("SERVER_PORT") == "" {
		t.Errorf("SERVER_NAME %q / SERVER_PORT %q must be non-empty (W7)", str("SERVER_NAME"), str("SERVER_PORT"))
	}
	if got := str("SERVER_PROTOCOL"); got != "HTTP/1.1" {
		t.Errorf("SERVER_PROTOCOL = %q, want HTTP/1.1 (W7)", got)
	}
	if d.Types["wsgi.version"] != "tuple" || fmt.Sprint(d.Vars["wsgi.version"]) != "[1 0]" {
		t.Errorf("wsgi.version = %v (%s), want (1, 0) (W10)", d.Vars["wsgi.version"], d.Types["wsgi.version"])
	}
	if got := str("wsgi.url_scheme"); got != "http" {
		t.Errorf("wsgi.url_scheme = %q, want http (W10)", got)
	}
	for _, k := range []string{"wsgi.multithread", "wsgi.multiprocess", "wsgi.run_once", "wsgi.input_terminated"} {
		if d.Types[k] != "bool" {
			t.Errorf("%s has type %q, want bool (W10, W12)", k, d.Types[k])
		}
	}
	if d.Vars["wsgi.run_once"] != false {
		t.Errorf("wsgi.run_once = %v, want False (W10)", d.Vars["wsgi.run_once"])
	}
	// 2 workers × 4 threads (G17).
	if d.Vars["wsgi.multiprocess"] != true || d.Vars["wsgi.multithread"] != true {
		t.Errorf("wsgi.multiprocess = %v, wsgi.multithread = %v, want True, True for 2 workers × 4 threads (W10, G17)",
			d.Vars["wsgi.multiprocess"], d.Vars["wsgi.multithread"])
	}
	if d.Vars["wsgi.input_terminated"] != true {
		t.Errorf("wsgi.input_terminated = %v, want True (W12)", d.Vars["wsgi.input_terminated"])
	}
	for _, k := range []string{"wsgi.input", "wsgi.errors", "wsgi.file_wrapper"} {
		if _, ok := d.Types[k]; !ok {
			t.Errorf("%s missing (W11, W13, W14)", k)
		}
	}
	if got := str("bridge.request_id"); got != reqID {
		t.Errorf("bridge.request_id = %q, want the X-Request-Id sent, %q (G19)", got, reqID)
	}
}

// opResult is one wsgi.input call as the /input route reports it.
type opResult struct {
	Op    string     `json:"op"`
	Type  string     `json:"type"`
	Value string     `json:"value"`
	Items []opResult `json:"items"`
}

func (r opResult) String() string {
	if r.Type == "list" {
		parts := make([]string, len(r.Items))
		for i, it := range r.Items {
			parts[i] = it.String()
		}
		return "list[" + strings.Join(parts, " ") + "]"
	}
	if r.Type != "bytes" {
		return r.Type
	}
	b, _ := latin1(r.Value)
	return "bytes:" + strconv.Quote(b)
}

func pattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i % 251)
	}
	return b
}

// testInput covers W11: read(size), read(), read(-1), read(None), readline,
// readline(size), readlines(hint), iteration, reads past the end (an empty bytes at
// once, every time), and a body bigger than one message.
func testInput(t *testing.T, fx *fixture) {
	big := pattern(200000)
	sum := sha256.Sum256(big)
	rest := sha256.Sum256(big[100:])
	lines := "line1\nline2\nlast"
	cases := []struct {
		name string
		body string
		ops  []string
		want []string
	}{
		{"read_past_end", "0123456789", []string{"read:100", "read", "read:5", "read:-1", "read:None"},
			[]string{`bytes:"0123456789"`, `bytes:""`, `bytes:""`, `bytes:""`, `bytes:""`}},
		{"read_sizes", "0123456789", []string{"read:3", "read:0", "read:4", "read:-1", "read:1"},
			[]string{`bytes:"012"`, `bytes:""`, `bytes:"3456"`, `bytes:"789"`, `bytes:""`}},
		{"read_none", "0123456789", []string{"read:None", "read"},
			[]string{`bytes:"0123456789"`, `bytes:""`}},
		{"readline", lines, []string{"readline", "readline:3", "readline", "readline", "readline", "read"},
			[]string{`bytes:"line1\n"`, `bytes:"lin"`, `bytes:"e2\n"`, `bytes:"last"`, `bytes:""`, `bytes:""`}},
		{"readlines", lines, []string{"readlines", "readline"},
			[]string{`list[bytes:"line1\n" bytes:"line2\n" bytes:"last"]`, `bytes:""`}},
		{"readlines_hint", lines, []string{"readlines:7", "read"},
			[]string{`list[bytes:"line1\n" bytes:"line2\n"]`, `bytes:"last"`}},
		{"iter", lines, []string{"iter", "read:1", "iter"},
			[]string{`list[bytes:"line1\n" bytes:"line2\n" bytes:"last"]`, `bytes:""`, `list[]`}},
		{"empty_body", "", []string{"read", "read:10", "readline", "readlines"},
			[]string{`bytes:""`, `bytes:""`, `bytes:""`, `list[]`}},
		{"big_body_blocks", string(big), []string{"chunks:7000", "read:10", "read"},
			[]string{fmt.Sprintf(`bytes:"%s:200000:30"`, hex.EncodeToString(sum[:])), `bytes:""`, `bytes:""`}},
		{"big_body_mixed", string(big), []string{"read:100", "chunks:65536", "read"},
			[]string{"bytes:" + strconv.Quote(string(big[:100])),
				fmt.Sprintf(`bytes:"%s:%d:5"`, hex.EncodeToString(rest[:]), len(big)-100), `bytes:""`}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			forFronts(t, fx.fronts, nil, func(t *testing.T, f front) {
				path := "/input?op=" + strings.Join(c.ops, "&op=")
				r := request(t, f, http.MethodPost, path, []byte(c.body),
					http.Header{"Content-Type": {"application/octet-stream"}})
				if r.status != 200 || r.bodyErr != nil {
					t.Fatalf("POST %s: %d %q (%v)", path, r.status, r.body, r.bodyErr)
				}
				var out struct {
					Results []opResult `json:"results"`
					Seconds float64    `json:"seconds"`
				}
				if err := json.Unmarshal(r.body, &out); err != nil {
					t.Fatalf("bad JSON %q: %v", r.body, err)
				}
				if len(out.Results) != len(c.want) {
					t.Fatalf("got %d results %v, want %d", len(out.Results), out.Results, len(c.want))
				}
				for i, res := range out.Results {
					if got, want := res.String(), c.want[i]; got != want {
						t.Errorf("%s → %s, want %s (W11)", res.Op, got, want)
					}
				}
				// Reads past the end never block (W11): the whole request
				// is quick, not a read timeout.
				if out.Seconds > 2 {
					t.Errorf("the reads took %.1fs: wsgi.input blocked (W11)", out.Seconds)
				}
			})
		})
	}
}
