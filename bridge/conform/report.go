package conform

import (
	"fmt"
	"io"
	"strings"
	"time"
)

// WriteTable prints one line per check, then the details of every failure
// and a closing count.
func WriteTable(w io.Writer, results []Result) {
	fmt.Fprintf(w, "  %-20s %-12s %-6s %8s\n", "check", "covers", "result", "time")
	counts := map[string]int{}
	for _, r := range results {
		counts[r.Outcome]++
		fmt.Fprintf(w, "  %-20s %-12s %-6s %8s\n", r.Name, r.IDs, r.Outcome, r.Took.Round(time.Millisecond))
	}
	for _, r := range results {
		if r.Outcome == "pass" {
			continue
		}
		fmt.Fprintf(w, "\n%s %s (%s):\n  %s\n", r.Outcome, r.Name, r.IDs, strings.ReplaceAll(r.Detail, "\n", "\n  "))
	}
	fmt.Fprintf(w, "\n%d checks: %d passed, %d failed, %d not applicable\n",
		len(results), counts["pass"], counts["FAIL"], counts["n/a"])
}
