package runners

import (
	"fmt"
	"strings"
	"unicode"
)

// Spec is a parsed --runner value.
//
//	python:MODULE:CALLABLE   a WSGI callable, e.g. python:app:application
//	python:MODULE            callable defaults to "application" (as uWSGI does)
//	perl:FILE.psgi           a PSGI app file, relative to --chdir
//	ruby:FILE.ru             a Rack config file, relative to --chdir
//	exec:CMD ARGS…           any executable that follows runners/CONTRACT.md
type Spec struct {
	// Language is the row of Languages that runs the spec, or "exec".
	Language string
	// App is what the shim loads: "MODULE:CALLABLE" for Python.
	App string
	// Command is the argv of an exec runner.
	Command []string
}

// String gives the spec back in --runner syntax, for logs.
func (s Spec) String() string {
	if s.Language == "exec" {
		return "exec:" + strings.Join(s.Command, " ")
	}
	return s.Language + ":" + s.App
}

// ParseSpec parses a --runner value. Errors say what a valid value looks like.
func ParseSpec(v string) (Spec, error) {
	lang, rest, ok := strings.Cut(v, ":")
	if !ok || rest == "" {
		return Spec{}, fmt.Errorf("runner %q: want LANGUAGE:TARGET, e.g. python:app:application or exec:/path/to/runner", v)
	}
	switch lang {
	case "exec":
		cmd := strings.Fields(rest)
		if len(cmd) == 0 {
			return Spec{}, fmt.Errorf("runner %q: exec needs a command", v)
		}
		return Spec{Language: "exec", Command: cmd}, nil
	case "python":
		mod, callable, found := strings.Cut(rest, ":")
		if !found {
			callable = "application"
		}
		if !dottedName(mod) {
			return Spec{}, fmt.Errorf("runner %q: %q is not a Python module name (want python:MODULE:CALLABLE, e.g. python:myapp.wsgi:application)", v, mod)
		}
		if !dottedName(callable) {
			return Spec{}, fmt.Errorf("runner %q: %q is not a Python attribute name (want python:MODULE:CALLABLE)", v, callable)
		}
		return Spec{Language: lang, App: mod + ":" + callable}, nil
	default:
		if _, known := Languages[lang]; known {
			return Spec{Language: lang, App: rest}, nil
		}
		return Spec{}, fmt.Errorf("runner %q: unknown language %q (known: %s, exec)", v, lang, strings.Join(LanguageNames(), ", "))
	}
}

// dottedName reports whether s is a dotted sequence of identifiers.
func dottedName(s string) bool {
	if s == "" {
		return false
	}
	for _, part := range strings.Split(s, ".") {
		if part == "" {
			return false
		}
		for i, r := range part {
			if !(r == '_' || unicode.IsLetter(r) || (i > 0 && unicode.IsDigit(r))) {
				return false
			}
		}
	}
	return true
}
