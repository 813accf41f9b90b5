package main

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"regexp"
	"strconv"
	"strings"
)

// citation is one mention of an ID by a test.
type citation struct {
	ID     string
	Column string
	Label  string // "path:TestName", "path:line" or "kit:check"
	Pos    string // path:line, for error messages
}

// lang says how to find tests and comments in one language's test files.
type lang struct {
	comment string         // line comment marker
	decl    *regexp.Regexp // a test or function declaration: group 1 is the indent, the first other non-empty group the name
	// goStyle: a declaration ends only at a closing "}" at its own indent
	// (gofmt guarantees it; raw strings may hold other column-0 lines).
	goStyle bool
	// docstrings: triple-quoted strings count as comments (Python).
	docstrings bool
}

var (
	langGo = lang{comment: "//", goStyle: true,
		decl: regexp.MustCompile(`^()func\s+(?:\([^)]*\)\s*)?(\w+)\s*[\[(]`)}
	langPython = lang{comment: "#", docstrings: true,
		decl: regexp.MustCompile(`^(\s*)(?:async\s+)?(?:def|class)\s+(\w+)`)}
	langPerl = lang{comment: "#",
		decl: regexp.MustCompile(`^(\s*)(?:subtest\s*\(?\s*(?:'([^']*)'|"([^"]*)")|sub\s+(\w+))`)}
	langRuby = lang{comment: "#",
		decl: regexp.MustCompile(`^(\s*)(?:def\s+(?:self\.)?(\w+[?!]?)|(?:it|test|describe)\s*\(?\s*(?:'([^']*)'|"([^"]*)"))`)}
	langJS = lang{comment: "//",
		decl: regexp.MustCompile("^(\\s*)(?:(?:test|it|describe)(?:\\.\\w+)?\\s*\\(\\s*(?:'([^']*)'|\"([^\"]*)\"|`([^`]*)`)|(?:async\\s+)?function\\s+(\\w+))")}
)

// idPattern finds ID candidates; boundaries are checked by hand (Go's
// regexp has no look-around): the character before must not be a letter,
// a digit or '%' (percent-encoding such as %C3), the one after not a letter
// or digit. '_' counts as a separator, so test_W26_close and "W1_W2" cite.
var idPattern = regexp.MustCompile(`(PS|[WPXRUFHGC])(\d{1,2})`)

// rangeSep joins two IDs of one prefix into a range: "PS01–PS36".
var rangeSep = regexp.MustCompile(`^\s*(?:–|—|-|\.\.\.?|…|to)\s*$`)

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// normalize spells an ID as docs/conformance.md does: PS with two digits,
// the others without leading zeros.
func normalize(prefix, num string) string {
	n, _ := strconv.Atoi(num)
	if prefix == "PS" {
		return fmt.Sprintf("PS%02d", n)
	}
	return prefix + strconv.Itoa(n)
}

// findIDs returns the IDs cited in text, ranges expanded.
func findIDs(text string) []string {
	type hit struct {
		prefix     string
		n          int
		start, end int
	}
	var hits []hit
	for _, m := range idPattern.FindAllStringSubmatchIndex(text, -1) {
		s, e := m[0], m[1]
		if s > 0 && (isAlnum(text[s-1]) || text[s-1] == '%') {
			continue
		}
		if e < len(text) && isAlnum(text[e]) {
			continue
		}
		n, _ := strconv.Atoi(text[m[4]:m[5]])
		hits = append(hits, hit{text[m[2]:m[3]], n, s, e})
	}
	var ids []string
	for i := 0; i < len(hits); i++ {
		h := hits[i]
		if i+1 < len(hits) {
			nx := hits[i+1]
			if nx.prefix == h.prefix && nx.n > h.n && rangeSep.MatchString(text[h.end:nx.start]) {
				for n := h.n; n <= nx.n; n++ {
					ids = append(ids, normalize(h.prefix, strconv.Itoa(n)))
				}
				i++
				continue
			}
		}
		ids = append(ids, normalize(h.prefix, strconv.Itoa(h.n)))
	}
	return ids
}

// span is a declaration's lines: from its comment block to its end.
type span struct {
	name       string
	start, end int // 0-based, inclusive
}

func indentOf(line string) int {
	return len(line) - len(strings.TrimLeft(line, " \t"))
}

var closer = regexp.MustCompile(`^\s*(?:[}\])]|end\b)`)

// commentStart returns the index of the line comment in line, or -1. It
// skips markers inside simple quoted strings.
func commentStart(line, marker string) int {
	var quote byte
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case quote != 0:
			if c == '\\' {
				i++
			} else if c == quote {
				quote = 0
			}
		case c == '"' || c == '\'' || c == '`':
			quote = c
		case strings.HasPrefix(line[i:], marker):
			return i
		}
	}
	return -1
}

// scanSource finds the citations in one test file. Inside a test (or in
// the comments directly above it) the whole line counts: the name, a
// docstring, comments, assertion messages. Outside any test only comments
// and docstrings count, labelled with their line.
func scanSource(path, column string, lg lang, text string) []citation {
	lines := strings.Split(text, "\n")
	// inDoc: the line is in or holds a triple-quoted string; openAt: one
	// is open where the line starts.
	inDoc := make([]bool, len(lines))
	openAt := make([]bool, len(lines))
	if lg.docstrings {
		open := ""
		for i, l := range lines {
			was := open != ""
			openAt[i] = was
			for _, q := range []string{`"""`, `'''`} {
				if open == "" || open == q {
					if strings.Count(l, q)%2 == 1 {
						if open == "" {
							open = q
						} else {
							open = ""
						}
					}
				}
			}
			inDoc[i] = was || open != "" || strings.Contains(l, `"""`) || strings.Contains(l, `'''`)
		}
	}
	isComment := func(i int) bool {
		t := strings.TrimSpace(lines[i])
		return strings.HasPrefix(t, lg.comment) || (lg.docstrings && strings.HasPrefix(t, "@"))
	}

	var spans []span
	for i, l := range lines {
		m := lg.decl.FindStringSubmatch(l)
		if m == nil || openAt[i] {
			continue
		}
		name := ""
		for _, g := range m[2:] {
			if g != "" {
				name = g
				break
			}
		}
		d := len(m[1])
		start := i
		for start > 0 && isComment(start-1) && indentOf(lines[start-1]) == d {
			start--
		}
		end := len(lines) - 1
		for j := i + 1; j < len(lines); j++ {
			l2 := lines[j]
			if strings.TrimSpace(l2) == "" || (lg.docstrings && inDoc[j]) {
				continue
			}
			ind := indentOf(l2)
			if lg.goStyle {
				if ind == d && strings.HasPrefix(strings.TrimSpace(l2), "}") {
					end = j
					break
				}
				continue
			}
			if ind < d || (ind == d && !closer.MatchString(l2)) {
				end = j - 1
				break
			}
			if ind == d {
				end = j
				break
			}
		}
		spans = append(spans, span{name, start, end})
	}

	var out []citation
	for i, l := range lines {
		var in *span
		for k := range spans {
			if spans[k].start <= i && i <= spans[k].end && (in == nil || spans[k].start >= in.start) {
				in = &spans[k]
			}
		}
		text := l
		if in == nil {
			switch {
			case lg.docstrings && inDoc[i]:
			case commentStart(l, lg.comment) >= 0:
				text = l[commentStart(l, lg.comment):]
			default:
				continue
			}
		}
		label := path + ":" + strconv.Itoa(i+1)
		if in != nil && in.name != "" {
			label = path + ":" + shorten(in.name)
		}
		for _, id := range findIDs(text) {
			out = append(out, citation{ID: id, Column: column, Label: label, Pos: path + ":" + strconv.Itoa(i+1)})
		}
	}
	return out
}

// scanKit reads the runner conformance kit's check table: every composite
// literal with an `IDs: "..."` field; its `Name: "..."` labels it.
func scanKit(path, src string, columns []string) ([]citation, error) {
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, path, src, 0)
	if err != nil {
		return nil, err
	}
	var out []citation
	ast.Inspect(f, func(n ast.Node) bool {
		cl, ok := n.(*ast.CompositeLit)
		if !ok {
			return true
		}
		var ids, name string
		var pos token.Pos
		for _, e := range cl.Elts {
			kv, ok := e.(*ast.KeyValueExpr)
			if !ok {
				continue
			}
			key, ok := kv.Key.(*ast.Ident)
			lit, ok2 := kv.Value.(*ast.BasicLit)
			if !ok || !ok2 || lit.Kind != token.STRING {
				continue
			}
			v, err := strconv.Unquote(lit.Value)
			if err != nil {
				continue
			}
			switch key.Name {
			case "IDs":
				ids, pos = v, lit.Pos()
			case "Name":
				name = v
			}
		}
		if pos == token.NoPos {
			return true
		}
		p := fset.Position(pos)
		at := path + ":" + strconv.Itoa(p.Line)
		label := "kit:" + name
		if name == "" {
			label = at
		}
		for _, id := range findIDs(ids) {
			for _, c := range columns {
				out = append(out, citation{ID: id, Column: c, Label: label, Pos: at})
			}
		}
		return true
	})
	return out, nil
}

// maxName bounds a test name that is a sentence (Perl subtests, JS tests).
const maxName = 40

func shorten(name string) string {
	name = strings.ReplaceAll(name, "`", "'")
	r := []rune(name)
	if len(r) <= maxName || !strings.Contains(name, " ") { // identifiers stay whole
		return name
	}
	return strings.TrimRight(string(r[:maxName]), " ") + "…"
}
