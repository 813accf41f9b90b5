package main

import (
	"os"
	"strings"
	"testing"
	"testing/fstest"
)

// TestCoverageTableIsCurrent fails when docs/coverage.md is not what the
// tests generate today, for instance when a covered ID lost its test.
func TestCoverageTableIsCurrent(t *testing.T) {
	root, err := repoRoot()
	if err != nil {
		t.Fatal(err)
	}
	want, err := generate(os.DirFS(root))
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(root + "/" + outputFile)
	if err != nil {
		t.Fatalf("%v: run `make coverage` and commit %s", err, outputFile)
	}
	if string(got) != string(want) {
		t.Fatalf("%s is stale; first differences (- committed, + generated):\n%s\nrun `make coverage` and commit %s",
			outputFile, firstDiff(string(got), string(want), 10), outputFile)
	}
}

// firstDiff lists up to n lines that differ, by line number.
func firstDiff(a, b string, n int) string {
	al, bl := strings.Split(a, "\n"), strings.Split(b, "\n")
	var out []string
	for i := 0; i < len(al) || i < len(bl); i++ {
		var x, y string
		if i < len(al) {
			x = al[i]
		}
		if i < len(bl) {
			y = bl[i]
		}
		if x != y {
			out = append(out, "- "+x, "+ "+y)
			if len(out) >= 2*n {
				break
			}
		}
	}
	return strings.Join(out, "\n")
}

// fixture is a tiny repository: two conformance items of each kind used
// here, two contract items, and one test per language.
func fixture() fstest.MapFS {
	return fstest.MapFS{
		"docs/conformance.md": {Data: []byte("# x\n\n- **W1** environ\n- **W2** latin-1\n- **P1** env\n" +
			"| PS01 | SCRIPT_NAME | x |\n- **U1** header\n- **G1** order\n- **F1** fastcgi\n")},
		"runners/CONTRACT.md":          {Data: []byte("- **C1** handshake\n- **C2** stdout\n")},
		"docs/coverage-exceptions.txt": {Data: []byte("# comment\nG1 node no node runner yet\n")},
		"bridge/front/http_test.go": {Data: []byte("package front\n\n" +
			"func TestU1Header(t *testing.T) {}\n\n" +
			"func TestWith_U1_Name(t *testing.T) {\n\tt.Run(\"%C3\", nil)\n}\n")},
		"python/tests/test_env.py": {Data: []byte("def test_fresh():\n    \"\"\"W1: a new dict.\n\n    More.\n    \"\"\"\n    assert True\n\n\ndef test_other():\n    pass\n")},
		"perl/t/env.t":             {Data: []byte("use Test::More;\n# P1 PS01 G1: a comment above the subtest\nsubtest 'fresh env' => sub {\n    ok 1;\n};\n")},
		"bridge/conform/checks.go": {Data: []byte("package conform\n\nvar checks = []check{\n\t{Name: \"handshake\", IDs: \"C1 G1\"},\n}\n")},
	}
}

func TestParserFixture(t *testing.T) {
	out, err := generate(fixture())
	if err != nil {
		t.Fatal(err)
	}
	s := string(out)
	for _, want := range []string{
		"| W1 | `python/tests/test_env.py:test_fresh` | – | – | – | – |", // Python docstring
		"| W2 | **gap** |",
		"| P1 | – | `perl/t/env.t:fresh env` |", // Perl comment directly above a subtest
		"| PS01 | – | `perl/t/env.t:fresh env` |",
		"| U1 | – | – | – | – | `bridge/front/http_test.go:TestWith_U1_Name` |", // ID in a Go test name; TestU1Header does not cite (no separator)
		"| G1 | `kit:handshake` | `perl/t/env.t:fresh env`, `kit:handshake` | `kit:handshake` | n/a: no node runner yet | – |",
		"| C1 | `kit:handshake` | `kit:handshake` | `kit:handshake` | `kit:handshake` | – |",
		"| C2 | **gap** | **gap** | **gap** | **gap** | – |",
		"| F1 | – | – | – | – | – |",
		"| covered / applicable | 3 / 5 | 4 / 5 | 2 / 3 | 1 / 2 | 1 / 1 |",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("missing %q in:\n%s", want, s)
		}
	}
	if strings.Contains(s, "C3") {
		t.Errorf("%%C3 in a string was taken for an ID:\n%s", s)
	}
}

func TestUnknownIDIsAnError(t *testing.T) {
	fs := fixture()
	fs["ruby/test/env_test.rb"] = &fstest.MapFile{Data: []byte("class T\n  def test_W99_typo\n  end\nend\n")}
	_, err := generate(fs)
	if err == nil || !strings.Contains(err.Error(), "ruby/test/env_test.rb:2: W99 is in neither") {
		t.Fatalf("want an error naming ruby/test/env_test.rb:2 and W99, got %v", err)
	}
}

func TestFindIDs(t *testing.T) {
	for in, want := range map[string]string{
		"W1_W2_environ":        "W1 W2",
		"PS01–PS03 and G4":     "PS01 PS02 PS03 G4",
		"PS4 U08":              "PS04 U8",
		"TestC1Writer %C3%A9":  "",
		"test_R5_server, W123": "R5",
	} {
		if got := strings.Join(findIDs(in), " "); got != want {
			t.Errorf("findIDs(%q) = %q, want %q", in, got, want)
		}
	}
}
