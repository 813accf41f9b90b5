package runners

import (
	"context"
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
