package main

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// columns of the table: the four runners and the Go fronts.
var columns = []string{"python", "perl", "ruby", "node", "fronts"}

// applies says which columns an ID's prefix concerns. F items apply
// nowhere: bridge has no FastCGI front.
func applies(id string) []string {
	switch prefixOf(id) {
	case "W":
		return []string{"python"}
	case "P", "PS", "X":
		return []string{"perl"}
	case "R":
		return []string{"ruby"}
	case "G":
		if frontItems[id] {
			return []string{"fronts"}
		}
		return []string{"python", "perl", "ruby", "node"}
	case "C":
		return []string{"python", "perl", "ruby", "node"}
	case "U", "H":
		return []string{"fronts"}
	}
	return nil
}

// frontItems are the G items that bridge's Go side decides whatever the
// runner: the body limit (G6), a runner crash (G15), the request timeout
// (G16), request trailers (G20), the same env across fronts (G22) and Go's
// check of the response head (G26).
var frontItems = map[string]bool{"G6": true, "G15": true, "G16": true, "G20": true, "G22": true, "G26": true}

func prefixOf(id string) string {
	return strings.TrimRight(id, "0123456789")
}

// Input files, relative to the repository root.
const (
	conformanceFile = "docs/conformance.md"
	contractFile    = "runners/CONTRACT.md"
	exceptionsFile  = "docs/coverage-exceptions.txt"
	outputFile      = "docs/coverage.md"
	kitDir          = "bridge/conform"
)

var (
	// A checklist item: "- **W1** …" or a table row "| PS01 | …".
	itemLine = regexp.MustCompile(`^\s*(?:[-*]\s+\*\*((?:PS|[WPXRUFHG])\d{1,2})\*\*|\|\s*\**((?:PS|[WPXRUFHG])\d{1,2})\**\s*\|)`)
	// A contract item: "**C1**" anywhere in runners/CONTRACT.md.
	contractItem = regexp.MustCompile(`\*\*(C\d{1,2})\*\*`)
)

// ids reads the known IDs, in document order.
func ids(fsys fs.FS) (conf, contract []string, err error) {
	b, err := fs.ReadFile(fsys, conformanceFile)
	if err != nil {
		return nil, nil, err
	}
	seen := map[string]bool{}
	for _, l := range strings.Split(string(b), "\n") {
		if m := itemLine.FindStringSubmatch(l); m != nil {
			id := m[1] + m[2]
			if !seen[id] {
				seen[id] = true
				conf = append(conf, id)
			}
		}
	}
	if b, err = fs.ReadFile(fsys, contractFile); err != nil {
		return nil, nil, err
	}
	for _, m := range contractItem.FindAllStringSubmatch(string(b), -1) {
		if !seen[m[1]] {
			seen[m[1]] = true
			contract = append(contract, m[1])
		}
	}
	sort.SliceStable(contract, func(i, j int) bool { return num(contract[i]) < num(contract[j]) })
	return conf, contract, nil
}

func num(id string) int {
	n, _ := strconv.Atoi(strings.TrimLeft(id, "ABCDEFGHIJKLMNOPQRSTUVWXYZ"))
	return n
}

// exceptions reads "ID column reason…" lines.
func exceptions(fsys fs.FS, known map[string]bool) (map[string]string, error) {
	out := map[string]string{}
	b, err := fs.ReadFile(fsys, exceptionsFile)
	if errors.Is(err, fs.ErrNotExist) {
		return out, nil
	} else if err != nil {
		return nil, err
	}
	var errs []error
	sc := bufio.NewScanner(strings.NewReader(string(b)))
	for n := 1; sc.Scan(); n++ {
		l := strings.TrimSpace(sc.Text())
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		f := strings.Fields(l)
		at := fmt.Sprintf("%s:%d", exceptionsFile, n)
		switch {
		case len(f) < 3:
			errs = append(errs, fmt.Errorf("%s: want `ID runner reason…`", at))
		case !known[f[0]]:
			errs = append(errs, fmt.Errorf("%s: unknown ID %s", at, f[0]))
		case !slices.Contains(columns, f[1]):
			errs = append(errs, fmt.Errorf("%s: unknown runner %q (one of %s)", at, f[1], strings.Join(columns, ", ")))
		case !slices.Contains(applies(f[0]), f[1]):
			errs = append(errs, fmt.Errorf("%s: %s does not apply to %s anyway", at, f[0], f[1]))
		default:
			out[f[0]+" "+f[1]] = strings.Join(f[2:], " ")
		}
	}
	return out, errors.Join(errs...)
}

// goColumn maps a Go test file to its column by name.
func goColumn(name string) string {
	switch {
	case strings.HasPrefix(name, "perl_") || strings.Contains(name, "_perl_"):
		return "perl"
	case strings.HasPrefix(name, "ruby_"):
		return "ruby"
	case strings.HasPrefix(name, "wsgi_") || strings.HasPrefix(name, "flask_"):
		return "python"
	}
	return "fronts"
}

// sourceOf says whether a file is a test source, and for which column.
func sourceOf(p string) (column string, lg lang, ok bool) {
	base := path.Base(p)
	switch {
	case strings.HasPrefix(p, "python/tests/") && strings.HasSuffix(base, ".py") &&
		(strings.HasPrefix(base, "test_") || strings.HasSuffix(base, "_test.py")):
		return "python", langPython, true
	case strings.HasPrefix(p, "perl/t/") && strings.HasSuffix(base, ".t"):
		return "perl", langPerl, true
	case strings.HasPrefix(p, "ruby/test/") && strings.HasSuffix(base, ".rb") &&
		(strings.HasPrefix(base, "test_") || strings.HasSuffix(base, "_test.rb")):
		return "ruby", langRuby, true
	case strings.HasPrefix(p, "examples/runners/node/") &&
		(strings.HasSuffix(base, ".test.js") || strings.HasPrefix(p, "examples/runners/node/test/") && strings.HasSuffix(base, ".js")):
		return "node", langJS, true
	case (strings.HasPrefix(p, "bridge/") || strings.HasPrefix(p, "runners/") || strings.HasPrefix(p, "e2e/")) &&
		strings.HasSuffix(base, "_test.go"):
		return goColumn(base), langGo, true
	}
	return "", lang{}, false
}

var skipDirs = map[string]bool{".git": true, "node_modules": true, "__pycache__": true, ".pytest_cache": true, "testdata": true}

// collect walks the tree for citations.
func collect(fsys fs.FS) ([]citation, error) {
	var out []citation
	for _, root := range []string{"python/tests", "perl/t", "ruby/test", "examples/runners/node", "bridge", "runners", "e2e"} {
		err := fs.WalkDir(fsys, root, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					return fs.SkipDir
				}
				return err
			}
			if d.IsDir() {
				if skipDirs[d.Name()] {
					return fs.SkipDir
				}
				return nil
			}
			col, lg, ok := sourceOf(p)
			kit := path.Dir(p) == kitDir && strings.HasSuffix(p, ".go") && !strings.HasSuffix(p, "_test.go")
			if !ok && !kit {
				return nil
			}
			b, err := fs.ReadFile(fsys, p)
			if err != nil {
				return err
			}
			if kit {
				cs, err := scanKit(p, string(b), applies("C1"))
				if err != nil {
					return fmt.Errorf("%s: %w", p, err)
				}
				out = append(out, cs...)
				return nil
			}
			out = append(out, scanSource(p, col, lg, string(b))...)
			return nil
		})
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
	}
	return out, nil
}

// maxShown is how many tests a cell names before "+N".
const maxShown = 2

// generate builds docs/coverage.md from the tree. It fails, listing every
// one, when a test cites an ID that neither docs/conformance.md nor
// runners/CONTRACT.md defines.
func generate(fsys fs.FS) ([]byte, error) {
	conf, contract, err := ids(fsys)
	if err != nil {
		return nil, err
	}
	known := map[string]bool{}
	for _, id := range append(append([]string(nil), conf...), contract...) {
		known[id] = true
	}
	exc, err := exceptions(fsys, known)
	if err != nil {
		return nil, err
	}
	cites, err := collect(fsys)
	if err != nil {
		return nil, err
	}

	// cell[id+" "+column] lists the labels of the tests that cite id.
	cell := map[string][]string{}
	var unknown []string
	for _, c := range cites {
		if !known[c.ID] {
			if prefixOf(c.ID) == "C" && len(contract) == 0 {
				continue // runners/CONTRACT.md has no C items yet
			}
			unknown = append(unknown, fmt.Sprintf("%s: %s is in neither %s nor %s", c.Pos, c.ID, conformanceFile, contractFile))
			continue
		}
		k := c.ID + " " + c.Column
		if !slices.Contains(cell[k], c.Label) {
			cell[k] = append(cell[k], c.Label)
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		return nil, fmt.Errorf("unknown IDs cited (a typo, or an item still to be written):\n  %s", strings.Join(unknown, "\n  "))
	}
	return render(conf, contract, exc, cell), nil
}

func render(conf, contract []string, exc map[string]string, cell map[string][]string) []byte {
	all := append(append([]string(nil), conf...), contract...)
	covered := map[string]int{}
	applicable := map[string]int{}
	gaps := map[string][]string{}
	var rows strings.Builder
	for _, id := range all {
		fmt.Fprintf(&rows, "| %s |", id)
		for _, col := range columns {
			k := id + " " + col
			labels := cell[k]
			switch {
			case !slices.Contains(applies(id), col):
				rows.WriteString(" – |")
			case exc[k] != "":
				fmt.Fprintf(&rows, " n/a: %s |", escape(exc[k]))
			case len(labels) == 0:
				applicable[col]++
				gaps[col] = append(gaps[col], id)
				rows.WriteString(" **gap** |")
			default:
				applicable[col]++
				covered[col]++
				// Named tests first, then bare file:line citations.
				sort.SliceStable(labels, func(i, j int) bool { return !bareLine(labels[i]) && bareLine(labels[j]) })
				shown := labels
				if len(shown) > maxShown {
					shown = shown[:maxShown]
				}
				parts := make([]string, len(shown))
				for i, l := range shown {
					parts[i] = "`" + l + "`"
				}
				s := strings.Join(parts, ", ")
				if n := len(labels) - len(shown); n > 0 {
					s += fmt.Sprintf(" +%d", n)
				}
				fmt.Fprintf(&rows, " %s |", s)
			}
		}
		rows.WriteString("\n")
	}

	var b strings.Builder
	b.WriteString(`# Conformance coverage

Generated by ` + "`go run ./docs/coverage`" + ` (` + "`make coverage`" + `) from the tests; do not
edit by hand. ` + "`go test ./docs/...`" + ` fails when this file is out of date.

Rows are the items of [conformance.md](conformance.md) and the runner
contract items (C) of [runners/CONTRACT.md](../runners/CONTRACT.md). A cell
names the tests that cite the item (in a test's name, docstring, or a
comment in or directly above it), as ` + "`file:test`" + `, or ` + "`file:line`" + ` when the
citation is outside any test; ` + "`kit:check`" + ` is a check of the runner
conformance kit (` + "`bridge/conform`" + `), which runs against every runner. "–":
the item does not concern that column; "n/a": an exception from
[coverage-exceptions.txt](coverage-exceptions.txt); **gap**: applicable and
not tested.

Columns: W → python; P, PS, X → perl; R → ruby; C and G → every runner,
but G6, G15, G16, G20, G22 and G26 → fronts (bridge decides them, whatever the runner);
U, H → fronts (the Go fronts, whatever the runner); F → none (bridge has no
FastCGI front).
`)
	if len(contract) == 0 {
		b.WriteString("\n" + contractFile + " defines no C items yet; citations of C IDs are left out.\n")
	}
	b.WriteString("\n## Totals\n\n| | " + strings.Join(columns, " | ") + " |\n|---|" + strings.Repeat("---|", len(columns)) + "\n| covered / applicable |")
	for _, col := range columns {
		fmt.Fprintf(&b, " %d / %d |", covered[col], applicable[col])
	}
	b.WriteString("\n\n## Known gaps\n\n")
	for _, col := range columns {
		g := gaps[col]
		if len(g) == 0 {
			fmt.Fprintf(&b, "- **%s**: none\n", col)
			continue
		}
		fmt.Fprintf(&b, "- **%s** (%d): %s\n", col, len(g), strings.Join(g, ", "))
	}
	b.WriteString("\n## Table\n\n| ID | " + strings.Join(columns, " | ") + " |\n|---|" + strings.Repeat("---|", len(columns)) + "\n")
	b.WriteString(rows.String())
	return []byte(b.String())
}

var lineSuffix = regexp.MustCompile(`:\d+$`)

func bareLine(label string) bool { return lineSuffix.MatchString(label) }

func escape(s string) string {
	return strings.ReplaceAll(s, "|", `\|`)
}
