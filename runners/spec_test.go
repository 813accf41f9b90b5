package runners

import (
	"context"
	"slices"
	"strings"
	"testing"
)

func TestParseSpec(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    Spec
		wantErr string
	}{
		{in: "python:app:application", want: Spec{Language: "python", App: "app:application"}},
		{in: "python:my.pkg.wsgi:app", want: Spec{Language: "python", App: "my.pkg.wsgi:app"}},
		{in: "python:app", want: Spec{Language: "python", App: "app:application"}},
		{in: "exec:/bin/runner --x 1", want: Spec{Language: "exec", Command: []string{"/bin/runner", "--x", "1"}}},
		{in: "perl:app.psgi", want: Spec{Language: "perl", App: "app.psgi"}},
		{in: "perl:", wantErr: "want LANGUAGE:TARGET"},
		{in: "ruby:config.ru", want: Spec{Language: "ruby", App: "config.ru"}},
		{in: "python:app:1bad", wantErr: "not a Python attribute name"},
		{in: "python:my-app:application", wantErr: "not a Python module name"},
		{in: "python:", wantErr: "want LANGUAGE:TARGET"},
		{in: "app.py", wantErr: "want LANGUAGE:TARGET"},
		{in: "cobol:x", wantErr: `unknown language "cobol"`},
		{in: "exec:  ", wantErr: "exec needs a command"},
		{in: `exec:/bin/runner --flag "two words" it\'s`, want: Spec{Language: "exec", Command: []string{"/bin/runner", "--flag", "two words", "it's"}}},
		{in: `exec:/bin/runner 'it`, wantErr: "unterminated single quote"},
	} {
		got, err := ParseSpec(tc.in)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%q: err %v, want %q", tc.in, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got.String() != tc.want.String() || got.Language != tc.want.Language {
			t.Errorf("%q: got %+v %v, want %+v", tc.in, got, err, tc.want)
		}
	}
}

// exec: commands are split as a POSIX shell splits words, and nothing more.
func TestSplitWords(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    []string
		wantErr string
	}{
		{in: "", want: nil},
		{in: " a \t b\n c ", want: []string{"a", "b", "c"}},
		{in: `a\tb`, want: []string{"atb"}},
		{in: `a\ b`, want: []string{"a b"}},
		{in: "/bin/r --flag \"two words\" it\\'s", want: []string{"/bin/r", "--flag", "two words", "it's"}},
		{in: `'single $HOME \ "x"'`, want: []string{`single $HOME \ "x"`}},
		{in: `"double \" \\ \$ \a $HOME *"`, want: []string{`double " \ $ \a $HOME *`}},
		{in: `a'b'"c"d`, want: []string{"abcd"}},
		{in: `'' ""`, want: []string{"", ""}},
		{in: "a\\\nb", want: []string{"ab"}},
		{in: "*.py ~ $X", want: []string{"*.py", "~", "$X"}},
		{in: "x 'open", wantErr: "unterminated single quote at byte 2"},
		{in: `x "open \"`, wantErr: "unterminated double quote at byte 2"},
		{in: `x \`, wantErr: "a backslash ends the command"},
	} {
		got, err := SplitWords(tc.in)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%q: err %v, want %q", tc.in, err, tc.wantErr)
			}
			continue
		}
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("%q: got %q %v, want %q", tc.in, got, err, tc.want)
		}
	}
}

// Each language names the uwsgi modifier1 of its interface (uWSGI's
// numbers), and an app target is parsed by its own row.
func TestLanguageTable(t *testing.T) {
	for name, want := range map[string]uint8{"python": 0, "perl": 5, "ruby": 7} {
		l, ok := Languages[name]
		if !ok || l.Name != name || l.Modifier1 != want {
			t.Errorf("%s: %+v, want Name %s and Modifier1 %d", name, l, name, want)
		}
	}
	for name, l := range Languages {
		if l.Name != name || l.EnvVar == "" || len(l.Candidates) == 0 || l.Shim == nil || l.Args == nil || l.PathEnv == "" {
			t.Errorf("%s: incomplete row %+v", name, l)
		}
	}
	if got := AppModifiers(); !slices.Equal(got, []uint8{0, 5, 7}) {
		t.Errorf("AppModifiers() = %v, want [0 5 7]", got)
	}
}

func TestFindInterpreterSaysWhatToInstall(t *testing.T) {
	lang := Language{Name: "python", EnvVar: "BRIDGE_TEST_NOPE", Candidates: []string{"/nonexistent/python3", "false"},
		Probe: []string{}, Install: "apt-get install python3-grpcio"}
	_, err := FindInterpreter(context.Background(), lang, "")
	if err == nil || !strings.Contains(err.Error(), "apt-get install python3-grpcio") || !strings.Contains(err.Error(), "--interpreter") {
		t.Fatalf("got %v", err)
	}
	_, err = FindInterpreter(context.Background(), lang, "/nonexistent/py")
	if err == nil || !strings.Contains(err.Error(), "--interpreter /nonexistent/py") {
		t.Fatalf("explicit: got %v", err)
	}
	lang.Candidates = []string{"true"}
	if p, err := FindInterpreter(context.Background(), lang, ""); err != nil || !strings.HasSuffix(p, "/true") {
		t.Fatalf("working candidate: %q %v", p, err)
	}
}
