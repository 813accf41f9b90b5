package deploy

import (
	"fmt"
	"strings"
	"testing"
)

// promRefs is what a PromQL expression names: each metric with the label
// names of its matchers, and the labels of by/without/on/ignoring/group_*.
type promRefs struct {
	metrics  map[string]map[string]bool
	grouping map[string]bool
}

// promKeywords take a parenthesised label list, or are operators.
var promKeywords = map[string]bool{
	"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true,
	"and": true, "or": true, "unless": true, "bool": true, "offset": true,
}

// promAggregations may be followed by "by (...)" before their "(".
var promAggregations = map[string]bool{
	"sum": true, "avg": true, "min": true, "max": true, "count": true, "group": true, "stddev": true,
	"stdvar": true, "topk": true, "bottomk": true, "quantile": true, "count_values": true, "limitk": true,
}

// parsePromQL finds the metric and label names of an expression. It is not
// a full PromQL parser, only enough for dashboards: an identifier followed
// by "(" is a function or aggregation; after by, without, on, ignoring,
// group_left and group_right the parenthesised names are labels; inside
// {...} the names before =, !=, =~, !~ are labels; any other identifier is
// a metric. Strings, [ranges] (durations, $__rate_interval) and numbers
// are skipped.
func parsePromQL(expr string) (promRefs, error) {
	refs := promRefs{metrics: map[string]map[string]bool{}, grouping: map[string]bool{}}
	s := expr
	i := 0
	lastMetric := ""
	skipSpace := func() {
		for i < len(s) && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n') {
			i++
		}
	}
	ident := func() string {
		j := i
		for i < len(s) && isIdentChar(s[i], i == j) {
			i++
		}
		return s[j:i]
	}
	skipString := func() error {
		q := s[i]
		for i++; i < len(s) && s[i] != q; i++ {
			if s[i] == '\\' {
				i++
			}
		}
		if i >= len(s) {
			return fmt.Errorf("unterminated string")
		}
		i++
		return nil
	}
	for i < len(s) {
		c := s[i]
		switch {
		case c == '"' || c == '\'' || c == '`':
			if err := skipString(); err != nil {
				return refs, err
			}
		case c == '[':
			j := strings.IndexByte(s[i:], ']')
			if j < 0 {
				return refs, fmt.Errorf("unterminated [range]")
			}
			i += j + 1
		case c == '{':
			if lastMetric == "" {
				return refs, fmt.Errorf("matchers without a metric name at %d", i)
			}
			i++
			for {
				skipSpace()
				if i >= len(s) {
					return refs, fmt.Errorf("unterminated {matchers}")
				}
				if s[i] == '}' {
					i++
					break
				}
				if s[i] == ',' {
					i++
					continue
				}
				name := ident()
				if name == "" {
					return refs, fmt.Errorf("bad matcher at %d", i)
				}
				refs.metrics[lastMetric][name] = true
				skipSpace()
				for i < len(s) && strings.IndexByte("=!~", s[i]) >= 0 {
					i++
				}
				skipSpace()
				if i >= len(s) || s[i] != '"' {
					return refs, fmt.Errorf("matcher %s without a quoted value", name)
				}
				if err := skipString(); err != nil {
					return refs, err
				}
			}
			lastMetric = ""
		case c >= '0' && c <= '9' || c == '.':
			for i < len(s) && (isIdentChar(s[i], false) || s[i] == '.') {
				i++ // numbers, and durations such as 5m outside brackets
			}
		case isIdentChar(c, true):
			name := ident()
			skipSpace()
			next := byte(0)
			if i < len(s) {
				next = s[i]
			}
			switch {
			case promKeywords[name] && next == '(':
				end := strings.IndexByte(s[i:], ')')
				if end < 0 {
					return refs, fmt.Errorf("unterminated %s (...)", name)
				}
				for _, l := range strings.Split(s[i+1:i+end], ",") {
					if l = strings.TrimSpace(l); l != "" {
						refs.grouping[l] = true
					}
				}
				i += end + 1
			case promKeywords[name]:
			case next == '(' || promAggregations[name]:
				// a function or aggregation
			default:
				if refs.metrics[name] == nil {
					refs.metrics[name] = map[string]bool{}
				}
				lastMetric = name
				continue
			}
		default:
			i++
		}
		lastMetric = ""
	}
	return refs, nil
}

func isIdentChar(c byte, first bool) bool {
	return c == '_' || c == ':' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || !first && c >= '0' && c <= '9'
}

// TestParsePromQL pins the parser on the shapes the dashboard uses, so a
// dashboard query it misreads cannot pass unchecked.
func TestParsePromQL(t *testing.T) {
	r, err := parsePromQL(`histogram_quantile(0.95, sum by (le) (rate(bridge_request_duration_seconds_bucket{instance=~"$instance", code!="a,b}"}[$__rate_interval]))) / on(instance) group_left up`)
	if err != nil {
		t.Fatal(err)
	}
	want := "bridge_request_duration_seconds_bucket[code instance] up[]"
	var got []string
	for _, m := range keys(mapKeys(r.metrics)) {
		got = append(got, m+fmt.Sprint(keys(r.metrics[m])))
	}
	if strings.Join(got, " ") != want {
		t.Errorf("metrics: %v, want %s", got, want)
	}
	if g := keys(r.grouping); fmt.Sprint(g) != "[instance le]" {
		t.Errorf("grouping labels: %v, want [instance le]", g)
	}
}

func mapKeys[V any](m map[string]V) map[string]bool {
	out := map[string]bool{}
	for k := range m {
		out[k] = true
	}
	return out
}
