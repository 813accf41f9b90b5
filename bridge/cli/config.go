package cli

import (
	"flag"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// loadConfig fills flags of fs from the YAML file at path (--config). Keys
// are flag names; repeatable flags take a list or a single value. Flags in
// set came from the command line or the environment, which win; their
// values in the file are still checked, so a typo never hides behind an
// override.
func loadConfig(fs *flag.FlagSet, path string, set map[string]bool) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return usageError(fmt.Sprintf("--config: %v", err))
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return usageError(yamlError(path, err))
	}
	if len(doc.Content) == 0 || doc.Content[0].Tag == "!!null" {
		return nil // an empty file (or only comments) sets nothing
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return configError(path, root.Line, "want flag names and values, e.g. \"workers: 4\"")
	}
	// Values of overridden flags are checked against a throwaway copy.
	scratch := newFlagSet("config", &options{}, true, io.Discard)
	seen := map[string]int{}
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		name := k.Value
		f := fs.Lookup(name)
		switch {
		case k.Kind != yaml.ScalarNode:
			return configError(path, k.Line, "keys must be flag names")
		case name == "config":
			return configError(path, k.Line, "config: a config file cannot name another one")
		case f == nil:
			msg := fmt.Sprintf("unknown key %q", name)
			if s := closestFlag(fs, name); s != "" {
				msg += fmt.Sprintf(" (did you mean %q?)", s)
			}
			return configError(path, k.Line, msg)
		case seen[name] > 0:
			return configError(path, k.Line, fmt.Sprintf("%s: given twice (first on line %d)", name, seen[name]))
		}
		seen[name] = k.Line
		target := f.Value
		if set[name] {
			target = scratch.Lookup(name).Value
		}
		if err := setFromNode(path, name, target, v); err != nil {
			return err
		}
	}
	return nil
}

// setFromNode sets one flag from a YAML value, using the value's source
// text, so "0660" stays octal text and "512M" a size, not YAML's idea of it.
func setFromNode(path, name string, value flag.Value, v *yaml.Node) error {
	if v.Kind == yaml.AliasNode {
		v = v.Alias
	}
	_, repeatable := value.(*listFlag)
	items := []*yaml.Node{v}
	switch {
	case v.Kind == yaml.SequenceNode && repeatable:
		items = v.Content
	case v.Kind == yaml.SequenceNode:
		return configError(path, v.Line, name+": takes one value, not a list")
	case v.Kind != yaml.ScalarNode:
		return configError(path, v.Line, name+": want a value, not a mapping")
	}
	for _, it := range items {
		if it.Kind == yaml.AliasNode {
			it = it.Alias
		}
		switch {
		case it.Kind != yaml.ScalarNode:
			return configError(path, it.Line, name+": list items must be plain values")
		case it.Tag == "!!null":
			return configError(path, it.Line, name+": no value")
		}
		if err := value.Set(it.Value); err != nil {
			return configError(path, it.Line, fmt.Sprintf("%s: %q: %s", name, it.Value, want(value, err)))
		}
	}
	return nil
}

// want explains what a flag accepts; the flag package itself only says
// "parse error" for numbers and durations.
func want(v flag.Value, err error) string {
	if g, ok := v.(flag.Getter); ok {
		switch g.Get().(type) {
		case int, int64, uint, uint64:
			return "want a whole number"
		case time.Duration:
			return "want a duration such as 30s, 5m or 1h30m"
		case bool:
			return "want true or false"
		}
	}
	return err.Error()
}

func configError(path string, line int, msg string) error {
	return usageError(fmt.Sprintf("%s:%d: %s", path, line, msg))
}

var yamlLine = regexp.MustCompile(`^yaml: line (\d+): `)

// yamlError turns "yaml: line 3: msg" into "FILE:3: msg", the form of every
// other config error.
func yamlError(path string, err error) string {
	msg := strings.ReplaceAll(err.Error(), "\n", "; ")
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		return path + ":" + m[1] + ": " + msg[len(m[0]):]
	}
	return path + ": " + strings.TrimPrefix(msg, "yaml: ")
}

// closestFlag suggests the flag a mistyped key probably meant: the same name
// with '_' for '-' or in another case, or one at most two edits away.
func closestFlag(fs *flag.FlagSet, key string) string {
	norm := strings.TrimLeft(strings.ToLower(strings.ReplaceAll(key, "_", "-")), "-")
	best, bestDist := "", 3
	fs.VisitAll(func(f *flag.Flag) {
		if f.Name == "config" {
			return
		}
		if d := editDistance(norm, f.Name); d < bestDist && 2*d < len(norm) {
			best, bestDist = f.Name, d
		}
	})
	return best
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
