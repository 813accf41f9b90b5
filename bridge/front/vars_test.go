package front

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"testing"

	"bridge/bridge/uwsgi"
)

// Building the list is linear in the number of vars (issue 14): counted in
// probes (index slots visited and names compared) and bytes copied by
// merges, not timed. Before the index, n distinct headers took n²/2 name
// comparisons (2·10⁸ here) and n repeats of one header copied n²/2 times
// its length (6·10⁸ bytes here).
func TestVarListLinear(t *testing.T) {
	const n = 20000
	// The bounds: an index at most half full needs under 2.5 probes per
	// lookup on average, and the rebuild at each doubling adds about as
	// many again. A merge writes each byte once where it ends up, and a
	// merged value grows geometrically, so its moves copy less than its
	// final length again.
	const probesPerVar, copiesPerByte = 8, 3

	nginxVars := func(l *varList) {
		for _, v := range goldenPacket(t, "get_plain").Vars {
			l.add(v.Name, v.Value)
		}
	}
	// What the fronts do after adding the vars: a fixed number of lookups,
	// each of which must be O(1) too.
	finish := func(t *testing.T, l *varList) {
		before := l.probes
		l.splitScript()
		l.ensure("SERVER_PROTOCOL", []byte("HTTP/1.1"))
		_ = l.has("QUERY_STRING")
		_ = l.get("HTTP_X_REQUEST_ID")
		l.set("CONTENT_LENGTH", []byte("5"))
		if got := l.probes - before; got > 7*max(probesPerVar, min(len(l.vars), linearMax)) {
			t.Errorf("7 lookups on %d vars took %d probes", len(l.vars), got)
		}
	}

	t.Run("uwsgi distinct", func(t *testing.T) {
		l := newVarList(n + 20)
		nginxVars(l)
		for i := range n {
			l.add(fmt.Appendf(nil, "HTTP_X_%d", i), []byte("v"))
		}
		if len(l.vars) != n+15 {
			t.Fatalf("%d vars, want %d", len(l.vars), n+15)
		}
		if l.probes > probesPerVar*len(l.vars) {
			t.Errorf("adding %d distinct vars took %d probes, want <= %d", len(l.vars), l.probes, probesPerVar*len(l.vars))
		}
		t.Logf("%d vars: %d probes", len(l.vars), l.probes)
		finish(t, l)
	})
	t.Run("uwsgi repeated", func(t *testing.T) {
		l := newVarList(n + 20)
		nginxVars(l)
		for range n {
			l.add([]byte("HTTP_X"), []byte("v"))
			l.add([]byte("HTTP_COOKIE"), []byte("a=b"))
		}
		x, c := l.get("HTTP_X"), l.get("HTTP_COOKIE")
		if len(x) != 3*n-2 || len(c) != 5*n-2 {
			t.Fatalf("merged lengths %d and %d, want %d and %d", len(x), len(c), 3*n-2, 5*n-2)
		}
		// A short list is scanned: a repeat costs a probe per var before it.
		if max := (len(l.vars) + 1) * 2 * n; l.probes > max {
			t.Errorf("adding %d repeats took %d probes, want <= %d", 2*n, l.probes, max)
		}
		if total := len(x) + len(c); l.copied > copiesPerByte*total {
			t.Errorf("merging %d repeats copied %d bytes for %d bytes of values, want <= %d", 2*n, l.copied, total, copiesPerByte*total)
		}
		t.Logf("%d repeats: %d probes, %d bytes copied for %d", 2*n, l.probes, l.copied, len(x)+len(c))
		finish(t, l)
	})
	t.Run("http distinct", func(t *testing.T) {
		hdr := http.Header{}
		for i := range n {
			hdr[fmt.Sprintf("X-%d", i)] = []string{"v"}
		}
		l := newVarList(16 + len(hdr))
		l.set("REQUEST_METHOD", []byte("GET"))
		addHeaders(l, hdr)
		if len(l.vars) != n+1 {
			t.Fatalf("%d vars, want %d", len(l.vars), n+1)
		}
		if l.probes > probesPerVar*len(l.vars) {
			t.Errorf("adding %d headers took %d probes, want <= %d", n, l.probes, probesPerVar*len(l.vars))
		}
		finish(t, l)
	})
	t.Run("http repeated", func(t *testing.T) {
		hdr := http.Header{"X": make([]string, n), "Cookie": make([]string, n)}
		for i := range n {
			hdr["X"][i], hdr["Cookie"][i] = "v", "a=b"
		}
		l := newVarList(16 + len(hdr))
		addHeaders(l, hdr)
		total := len(l.get("HTTP_X")) + len(l.get("HTTP_COOKIE"))
		if total != 8*n-4 {
			t.Fatalf("merged %d bytes, want %d", total, 8*n-4)
		}
		if l.probes > (len(l.vars)+1)*2*n || l.copied > copiesPerByte*total {
			t.Errorf("adding %d repeats: %d probes, %d bytes copied", 2*n, l.probes, l.copied)
		}
		finish(t, l)
	})
}

// refList is the varList's semantics written plainly (U4): first appearance
// fixes the order, repeated HTTP_* are joined, any other repeat replaces.
type refList struct {
	names  []string
	values map[string]string
}

func (r *refList) add(name, value string) {
	old, ok := r.values[name]
	switch {
	case !ok:
		r.names = append(r.names, name)
		r.values[name] = value
	case name == "HTTP_COOKIE":
		r.values[name] = old + "; " + value
	case strings.HasPrefix(name, "HTTP_"):
		r.values[name] = old + ", " + value
	default:
		r.values[name] = value
	}
}

func (r *refList) set(name, value string) {
	if _, ok := r.values[name]; !ok {
		r.names = append(r.names, name)
	}
	r.values[name] = value
}

func (r *refList) del(name string) {
	if i := slices.Index(r.names, name); i >= 0 {
		r.names = slices.Delete(r.names, i, i+1)
		delete(r.values, name)
	}
}

// The list behaves as refList on either side of linearMax, and a merge never
// writes into a value's array that the list does not own.
func TestVarListMatchesReference(t *testing.T) {
	for seed := range uint64(20) {
		rng := rand.New(rand.NewPCG(seed, 1))
		names := []string{"HTTP_COOKIE", "HTTP_ACCEPT", "REQUEST_METHOD", "SERVER_NAME", "HTTP_X_A", "PATH_INFO"}
		for i := range 40 + rng.IntN(200) {
			names = append(names, fmt.Sprintf("HTTP_X_%d", i), fmt.Sprintf("V%d", i))
		}
		// Values are slices of one array, each with spare capacity over
		// its neighbours: a merge that appended in place would show.
		shared := []byte(strings.Repeat("0123456789", 20))
		pristine := bytes.Clone(shared)
		value := func() []byte {
			off := rng.IntN(len(shared) - 10)
			return shared[off : off+1+rng.IntN(9)]
		}
		l, ref := newVarList(rng.IntN(8)), &refList{values: map[string]string{}}
		for op := range 3000 {
			name := names[rng.IntN(len(names))]
			switch v := value(); rng.IntN(10) {
			case 0, 1:
				l.set(name, v)
				ref.set(name, string(v))
			case 2:
				if op%50 == 0 {
					l.del(name)
					ref.del(name)
				}
			case 3:
				want, ok := ref.values[name]
				if got := l.get(name); l.has(name) != ok || string(got) != want {
					t.Fatalf("seed %d op %d: get(%s) = %q, %v; want %q, %v", seed, op, name, got, l.has(name), want, ok)
				}
			default:
				l.add([]byte(name), v)
				ref.add(name, string(v))
			}
		}
		if len(l.vars) != len(ref.names) {
			t.Fatalf("seed %d: %d vars, want %d", seed, len(l.vars), len(ref.names))
		}
		for i, v := range l.vars {
			if string(v.Name) != ref.names[i] || string(v.Value) != ref.values[ref.names[i]] {
				t.Fatalf("seed %d: var %d = %s=%q, want %s=%q", seed, i, v.Name, v.Value, ref.names[i], ref.values[ref.names[i]])
			}
		}
		if len(l.vars) > linearMax && l.slots == nil {
			t.Errorf("seed %d: %d vars and no index", seed, len(l.vars))
		}
		if !bytes.Equal(shared, pristine) {
			t.Fatalf("seed %d: a merge wrote into a caller's array", seed)
		}
	}
}

// U5: a var name that no CGI environment could hold is dropped (the uwsgi front
// is the only way one arrives).
func TestUwsgiDropsInvalidVarNames(t *testing.T) {
	p := goldenPacket(t, "get_plain")
	for _, name := range []string{"", "HTTP_A=B", "=", "HTTP_X\x00", "HTTP_X\r\nY", "HTTP_\x7f"} {
		p.Vars = append(p.Vars, uwsgi.Var{Name: []byte(name), Value: []byte("v")})
	}
	req, err := NewUwsgi(Config{Handler: &Handler{}, ServerName: "s"}).canonical(p)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range req.Vars {
		if !validName(v.Name) {
			t.Errorf("var %q passed", v.Name)
		}
	}
	if want := 14; len(req.Vars) != want { // get_plain's 15 less the empty CONTENT_*, plus SCRIPT_NAME
		t.Errorf("%d vars, want %d", len(req.Vars), want)
	}
}

// validName's 8-bytes-at-a-time test agrees with the plain one for every
// byte at every position.
func TestValidName(t *testing.T) {
	plain := func(name []byte) bool {
		for _, c := range name {
			if c < ' ' || c == '=' || c == 0x7f {
				return false
			}
		}
		return len(name) > 0
	}
	if validName(nil) || validName([]byte{}) {
		t.Error("empty name valid")
	}
	for n := 1; n <= 24; n++ {
		for pos := range n {
			name := bytes.Repeat([]byte{'A'}, n)
			for c := range 256 {
				name[pos] = byte(c)
				if got, want := validName(name), plain(name); got != want {
					t.Fatalf("validName(%q) = %v, want %v", name, got, want)
				}
			}
		}
	}
}
