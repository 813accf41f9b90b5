package deploy

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"testing"
	"time"
)

// grafanaDashboard is the part of deploy/grafana/bridge.json the test reads.
type grafanaDashboard struct {
	Panels []struct {
		Type        string `json:"type"`
		Title       string `json:"title"`
		Description string `json:"description"`
		Targets     []struct {
			Expr string `json:"expr"`
		} `json:"targets"`
	} `json:"panels"`
	Templating struct {
		List []struct {
			Definition string `json:"definition"`
		} `json:"list"`
	} `json:"templating"`
}

// targetLabels are added by Prometheus when it scrapes, so they are on
// every series in Prometheus but not in bridge's /metrics.
var targetLabels = map[string]bool{"instance": true, "job": true}

// TestGrafanaDashboardMatchesMetrics starts a real bridge serving the demo
// app, makes it answer requests and recycle a worker (so that every metric
// family has a series), scrapes its /metrics and checks that each PromQL
// expression of deploy/grafana/bridge.json names only metrics bridge
// exports, with only labels those metrics have; that every bridge_* metric
// appears on the dashboard; and that deploy/grafana/README.md explains
// every panel.
func TestGrafanaDashboardMatchesMetrics(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("grafana", "bridge.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash grafanaDashboard
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("deploy/grafana/bridge.json is not valid JSON: %v", err)
	}
	exported := scrapeLiveBridge(t)

	var exprs []string
	for _, v := range dash.Templating.List {
		if inner, ok := strings.CutPrefix(v.Definition, "label_values("); ok {
			metric, label, _ := strings.Cut(strings.TrimSuffix(inner, ")"), ",")
			exprs = append(exprs, fmt.Sprintf("sum by (%s) (%s)", strings.TrimSpace(label), strings.TrimSpace(metric)))
		}
	}
	readme, err := os.ReadFile(filepath.Join("grafana", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range dash.Panels {
		if p.Type == "row" {
			continue
		}
		if p.Description == "" {
			t.Errorf("panel %q has no description (the question it answers)", p.Title)
		}
		if !strings.Contains(string(readme), "**"+p.Title+"**") {
			t.Errorf("deploy/grafana/README.md does not explain panel %q (as **%s**)", p.Title, p.Title)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			exprs = append(exprs, tg.Expr)
		}
	}

	used := map[string]bool{}
	for _, e := range exprs {
		ref, err := parsePromQL(e)
		if err != nil {
			t.Errorf("%v in %s", err, e)
			continue
		}
		if len(ref.metrics) == 0 {
			t.Errorf("no metric in %s", e)
		}
		labelsOfExpr := map[string]bool{}
		for m, labels := range ref.metrics {
			used[familyOf(m, exported)] = true
			have, ok := exported[m]
			if !ok {
				t.Errorf("metric %s is not in bridge's /metrics (expression %s)", m, e)
				continue
			}
			for l := range have {
				labelsOfExpr[l] = true
			}
			for l := range labels {
				if !have[l] && !targetLabels[l] {
					t.Errorf("metric %s has no label %q (it has %v) in %s", m, l, keys(have), e)
				}
			}
		}
		for l := range ref.grouping {
			if !labelsOfExpr[l] && !targetLabels[l] {
				t.Errorf("grouping label %q is on none of the metrics of %s", l, e)
			}
		}
	}
	for m := range exported {
		if strings.HasPrefix(m, "bridge_") && !used[familyOf(m, exported)] {
			t.Errorf("bridge exports %s but no panel shows it: add it to deploy/grafana/bridge.json and its README", m)
		}
	}
}

// familyOf maps a histogram's _bucket/_sum/_count series to its family name.
func familyOf(m string, exported map[string]map[string]bool) string {
	for _, suf := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(m, suf); ok {
			if _, isBucket := exported[base+"_bucket"]; isBucket {
				return base
			}
		}
	}
	return m
}

func keys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// scrapeLiveBridge builds bridge, serves deploy/demo/app.py with one worker
// recycled every 3 requests, sends a few requests, waits until the recycle
// is counted, and returns every series name of /metrics with its label
// names.
func scrapeLiveBridge(t *testing.T) map[string]map[string]bool {
	t.Helper()
	bin := buildBridgeForDeployTests(t)
	httpAddr, adminAddr := freeLocalAddr(t), freeLocalAddr(t)
	cmd := exec.Command(bin, "serve", "--runner", "python:app:application", "--chdir", filepath.Join("demo"),
		"--http", httpAddr, "--admin", adminAddr, "--workers", "1", "--max-requests", "3", "--grace", "5s")
	done := serveBridge(t, cmd, adminAddr, "bridge ready (/readyz 200)")
	client := &http.Client{Timeout: 10 * time.Second}
	for _, path := range []string{"/", "/env", "/stream", "/", "/missing", "/"} {
		resp, err := client.Get("http://" + httpAddr + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	var series map[string]map[string]bool
	waitFor(t, done, "a worker restart counted in /metrics (--max-requests 3)", func() bool {
		resp, err := client.Get("http://" + adminAddr + "/metrics")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		series, err = parseExposition(resp.Body)
		if err != nil {
			t.Fatalf("/metrics: %v", err)
		}
		_, ok := series["bridge_worker_restarts_total"]
		return ok
	})
	return series
}

// waitFor polls ok for up to 30 s (a hang detector, not a timing check).
func waitFor(t *testing.T, exited <-chan struct{}, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !ok() {
		select {
		case <-exited:
			t.Fatalf("bridge exited while waiting for %s", what)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s within 30s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// parseExposition reads Prometheus's text format: series name → label names.
func parseExposition(r io.Reader) (map[string]map[string]bool, error) {
	out := map[string]map[string]bool{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		end := strings.IndexAny(line, "{ ")
		if end <= 0 {
			return nil, fmt.Errorf("bad line %q", line)
		}
		name := line[:end]
		if out[name] == nil {
			out[name] = map[string]bool{}
		}
		if line[end] != '{' {
			continue
		}
		rest := line[end+1:]
		for !strings.HasPrefix(rest, "}") {
			eq := strings.Index(rest, "=\"")
			if eq <= 0 {
				return nil, fmt.Errorf("bad labels in %q", line)
			}
			out[name][strings.TrimSpace(rest[:eq])] = true
			i := eq + 2
			for i < len(rest) && rest[i] != '"' {
				if rest[i] == '\\' {
					i++
				}
				i++
			}
			if i >= len(rest) {
				return nil, fmt.Errorf("unterminated label value in %q", line)
			}
			rest = strings.TrimPrefix(rest[i+1:], ",")
		}
	}
	return out, sc.Err()
}

// freeLocalAddr is a 127.0.0.1 port free a moment ago.
func freeLocalAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// buildBridgeForDeployTests builds cmd/bridge into a temp dir.
func buildBridgeForDeployTests(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "bridge")
	cmd := exec.Command(goTool(), "build", "-o", bin, "./cmd/bridge")
	cmd.Dir = ".."
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/bridge: %v\n%s", err, out)
	}
	return bin
}

// goTool is the go command: on PATH, or the one of this toolchain.
func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return filepath.Join(runtime.GOROOT(), "bin", "go")
}
