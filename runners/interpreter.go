package runners

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"
)

// FindInterpreter picks the interpreter for lang: explicit (from
// --interpreter) if set, else $EnvVar, else the first candidate whose Probe
// succeeds. Explicit choices must pass the probe too, so a wrong path fails at
// start-up with a reason instead of at the first request.
func FindInterpreter(ctx context.Context, lang Language, explicit string) (string, error) {
	var tried []string
	try := func(name string) (string, bool) {
		path, err := exec.LookPath(name)
		if err != nil {
			tried = append(tried, fmt.Sprintf("%s: not found", name))
			return "", false
		}
		if msg := probe(ctx, path, lang.Probe); msg != "" {
			tried = append(tried, fmt.Sprintf("%s: %s", path, msg))
			return "", false
		}
		return path, true
	}
	if explicit != "" {
		if p, ok := try(explicit); ok {
			return p, nil
		}
		return "", fmt.Errorf("--interpreter %s cannot run the %s runner (%s); install: %s", explicit, lang.Name, strings.Join(tried, "; "), lang.Install)
	}
	if env := os.Getenv(lang.EnvVar); env != "" {
		if p, ok := try(env); ok {
			return p, nil
		}
		return "", fmt.Errorf("$%s=%s cannot run the %s runner (%s); install: %s", lang.EnvVar, env, lang.Name, strings.Join(tried, "; "), lang.Install)
	}
	seen := map[string]bool{}
	for _, c := range lang.Candidates {
		if p, err := exec.LookPath(c); err == nil && seen[p] {
			continue
		} else if err == nil {
			seen[p] = true
		}
		if p, ok := try(c); ok {
			return p, nil
		}
	}
	return "", fmt.Errorf("no %s interpreter can run the %s runner (tried %s); install: %s, or pass --interpreter PATH",
		lang.Name, lang.Name, strings.Join(tried, "; "), lang.Install)
}

// probe runs the interpreter with args and returns "" on success, else a
// short reason (the last line of its stderr).
func probe(ctx context.Context, path string, args []string) string {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, path, args...).CombinedOutput()
	if err == nil {
		return ""
	}
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return "probe timed out"
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if last := strings.TrimSpace(lines[len(lines)-1]); last != "" {
		return last
	}
	return err.Error()
}
