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
//	exec:CMD ARGS…           any executable that follows runners/CONTRACT.md,
//	                         split into words as a POSIX shell would (SplitWords)
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
	if lang == "exec" {
		cmd, err := SplitWords(rest)
		if err != nil {
			return Spec{}, fmt.Errorf("runner %q: %v", v, err)
		}
		if len(cmd) == 0 {
			return Spec{}, fmt.Errorf("runner %q: exec needs a command", v)
		}
		return Spec{Language: "exec", Command: cmd}, nil
	}
	l, known := Languages[lang]
	if !known {
		return Spec{}, fmt.Errorf("runner %q: unknown language %q (known: %s, exec)", v, lang, strings.Join(LanguageNames(), ", "))
	}
	app := rest
	if l.ParseApp != nil {
		var err error
		if app, err = l.ParseApp(rest); err != nil {
			return Spec{}, fmt.Errorf("runner %q: %v", v, err)
		}
	}
	return Spec{Language: lang, App: app}, nil
}

// SplitWords splits s into words as a POSIX shell does, and does nothing
// else a shell would: 'single quotes' keep everything literally, "double
// quotes" keep everything but \" \\ \$ \` and \newline, a backslash outside
// quotes escapes the next character; no variables, globs or substitutions
// are expanded, and no shell is run. So a --runner value copied from a
// shell command line starts the same argv.
func SplitWords(s string) ([]string, error) {
	var words []string
	var w strings.Builder
	inWord := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n':
			if inWord {
				words = append(words, w.String())
				w.Reset()
				inWord = false
			}
			continue
		case c == '\\':
			if i+1 == len(s) {
				return nil, fmt.Errorf("a backslash ends the command (escape it as \\\\)")
			}
			i++
			if s[i] != '\n' { // backslash-newline joins lines
				w.WriteByte(s[i])
			}
		case c == '\'':
			end := strings.IndexByte(s[i+1:], '\'')
			if end < 0 {
				return nil, fmt.Errorf("unterminated single quote at byte %d", i)
			}
			w.WriteString(s[i+1 : i+1+end])
			i += end + 1
		case c == '"':
			j := i + 1
			for ; j < len(s) && s[j] != '"'; j++ {
				if s[j] == '\\' && j+1 < len(s) && strings.IndexByte("\"\\$`\n", s[j+1]) >= 0 {
					j++
					if s[j] != '\n' {
						w.WriteByte(s[j])
					}
					continue
				}
				w.WriteByte(s[j])
			}
			if j == len(s) {
				return nil, fmt.Errorf("unterminated double quote at byte %d", i)
			}
			i = j
		default:
			w.WriteByte(c)
		}
		inWord = true
	}
	if inWord {
		words = append(words, w.String())
	}
	return words, nil
}

// pythonApp checks a python: target, MODULE or MODULE:CALLABLE, and
// returns MODULE:CALLABLE (callable "application" by default, as uWSGI).
func pythonApp(rest string) (string, error) {
	mod, callable, found := strings.Cut(rest, ":")
	if !found {
		callable = "application"
	}
	if !dottedName(mod) {
		return "", fmt.Errorf("%q is not a Python module name (want python:MODULE:CALLABLE, e.g. python:myapp.wsgi:application)", mod)
	}
	if !dottedName(callable) {
		return "", fmt.Errorf("%q is not a Python attribute name (want python:MODULE:CALLABLE)", callable)
	}
	return mod + ":" + callable, nil
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
