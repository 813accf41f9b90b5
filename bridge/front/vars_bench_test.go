package front

import (
	"bufio"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"

	"bridge/bridge/uwsgi"
)

// browserHeaders is what a desktop browser sends for a page: with nginx's
// 13 uwsgi_params (and the HTTP front's 14 own vars) the usual 25–40 vars.
var browserHeaders = [][2]string{
	{"Host", "example.com"},
	{"Connection", "keep-alive"},
	{"Cache-Control", "max-age=0"},
	{"Sec-Ch-Ua", `"Chromium";v="131", "Not_A Brand";v="24"`},
	{"Sec-Ch-Ua-Mobile", "?0"},
	{"Sec-Ch-Ua-Platform", `"Linux"`},
	{"Upgrade-Insecure-Requests", "1"},
	{"User-Agent", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"},
	{"Accept", "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8"},
	{"Sec-Fetch-Site", "same-origin"},
	{"Sec-Fetch-Mode", "navigate"},
	{"Sec-Fetch-User", "?1"},
	{"Sec-Fetch-Dest", "document"},
	{"Referer", "https://example.com/"},
	{"Accept-Encoding", "gzip, deflate, br, zstd"},
	{"Accept-Language", "en-GB,en;q=0.9"},
	{"Cookie", "session=abc123"},
	{"Cookie", "theme=dark"},
}

// headerVar is the var name nginx gives a header.
func headerVar(h string) string {
	return "HTTP_" + strings.ToUpper(strings.ReplaceAll(h, "-", "_"))
}

// goldenPacket reads one of bridge/uwsgi's packets captured from nginx.
func goldenPacket(tb testing.TB, name string) *uwsgi.Packet {
	tb.Helper()
	f, err := os.Open("../uwsgi/testdata/" + name + ".uwsgi")
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	p, err := uwsgi.ReadPacket(bufio.NewReader(f))
	if err != nil {
		tb.Fatal(err)
	}
	return p
}

// browserPacket is nginx's get_plain packet with the browser's headers.
func browserPacket(tb testing.TB) *uwsgi.Packet {
	p := goldenPacket(tb, "get_plain")
	vars := p.Vars[:0:0]
	for _, v := range p.Vars {
		if !strings.HasPrefix(string(v.Name), "HTTP_") {
			vars = append(vars, v)
		}
	}
	for _, h := range browserHeaders {
		vars = append(vars, uwsgi.Var{Name: []byte(headerVar(h[0])), Value: []byte(h[1])})
	}
	p.Vars = vars
	return p
}

// floodPacket is the attack of issue 14: n header vars in one packet,
// distinct names or all one name.
func floodPacket(tb testing.TB, n int, repeated bool) *uwsgi.Packet {
	p := goldenPacket(tb, "get_plain")
	for i := range n {
		name := fmt.Sprintf("HTTP_X_%d", i)
		if repeated {
			name = "HTTP_X"
		}
		p.Vars = append(p.Vars, uwsgi.Var{Name: []byte(name), Value: []byte("v")})
	}
	return p
}

func browserRequest(tb testing.TB) *http.Request {
	var b strings.Builder
	b.WriteString("GET /app/page?x=1 HTTP/1.1\r\n")
	for _, h := range browserHeaders {
		fmt.Fprintf(&b, "%s: %s\r\n", h[0], h[1])
	}
	b.WriteString("\r\n")
	r, err := http.ReadRequest(bufio.NewReader(strings.NewReader(b.String())))
	if err != nil {
		tb.Fatal(err)
	}
	r.RemoteAddr = "127.0.0.1:50000"
	return r
}

func floodRequest(tb testing.TB, n int) *http.Request {
	r := browserRequest(tb)
	for i := range n {
		r.Header[fmt.Sprintf("X-%d", i)] = []string{"v"}
	}
	return r
}

func benchUwsgi(b *testing.B, p *uwsgi.Packet) {
	u := NewUwsgi(Config{Handler: &Handler{}, ServerName: "testhost"})
	b.ReportAllocs()
	for b.Loop() {
		if _, err := u.canonical(p); err != nil {
			b.Fatal(err)
		}
	}
}

func benchHTTP(b *testing.B, r *http.Request) {
	f := NewHTTP(Config{Handler: &Handler{Limits: Limits{MaxBody: 1 << 20}}, ServerName: "testhost"})
	b.ReportAllocs()
	for b.Loop() {
		if _, err := f.canonical(r); err != nil {
			b.Fatal(err)
		}
	}
}

// The usual request: these must not get slower for the flood's sake.
func BenchmarkCanonicalUwsgiBrowser(b *testing.B) { benchUwsgi(b, browserPacket(b)) }
func BenchmarkCanonicalHTTPBrowser(b *testing.B)  { benchHTTP(b, browserRequest(b)) }

// The flood: 9,500 header vars, about what fits in 64 KiB.
func BenchmarkCanonicalUwsgiFlood(b *testing.B)     { benchUwsgi(b, floodPacket(b, 9500, false)) }
func BenchmarkCanonicalUwsgiFloodSame(b *testing.B) { benchUwsgi(b, floodPacket(b, 9500, true)) }
func BenchmarkCanonicalHTTPFlood(b *testing.B)      { benchHTTP(b, floodRequest(b, 9500)) }

// BenchmarkVarListBrowser is the list's share of the uwsgi front's
// canonical: adding the usual request's vars, then its lookups.
func BenchmarkVarListBrowser(b *testing.B) {
	benchVarList(b, func(n int) *varList { return newVarList(n) })
}

// BenchmarkVarListBrowserWarm is the same with the list's arrays reused:
// the list's own work without the allocation and GC that are most of the
// above.
func BenchmarkVarListBrowserWarm(b *testing.B) {
	l := newVarList(64)
	benchVarList(b, func(int) *varList {
		*l = varList{vars: l.vars[:0], store: l.store[:0]}
		return l
	})
}

func benchVarList(b *testing.B, newList func(n int) *varList) {
	p := browserPacket(b)
	b.ReportAllocs()
	for b.Loop() {
		l := newList(len(p.Vars) + 4)
		for _, v := range p.Vars {
			l.add(v.Name, v.Value)
		}
		l.splitScript()
		if !l.has("QUERY_STRING") {
			l.set("QUERY_STRING", nil)
		}
		l.ensure("SERVER_PROTOCOL", []byte("HTTP/1.1"))
		l.ensure("SERVER_NAME", []byte("testhost"))
		l.ensure("SERVER_PORT", []byte("80"))
		_ = l.get("REQUEST_METHOD")
		_ = l.get("CONTENT_LENGTH")
		_ = l.get("REQUEST_URI")
		_ = l.get("HTTP_X_REQUEST_ID")
	}
}
