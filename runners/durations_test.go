package runners

import (
	"bufio"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// testdata/durations.txt is the one table of BRIDGE_GRACE's format that
// every shim's parser is tested against; here Go's own parser (the format's
// definition, and what formats the values) must agree with every line, so
// the table cannot say anything Go would not.
func TestDurationTableIsGos(t *testing.T) {
	f, err := os.Open("../testdata/durations.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	n := 0
	for line := 1; sc.Scan(); line++ {
		text := sc.Text()
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		in, want, ok := strings.Cut(text, "\t")
		if !ok {
			t.Fatalf("line %d: no tab in %q", line, text)
		}
		n++
		got, err := time.ParseDuration(in)
		if want == "error" {
			if err == nil {
				t.Errorf("line %d: time.ParseDuration(%q) = %d, table says error", line, in, got)
			}
			continue
		}
		ns, perr := strconv.ParseInt(want, 10, 64)
		if perr != nil {
			t.Fatalf("line %d: %q is neither nanoseconds nor error", line, want)
		}
		if err != nil || int64(got) != ns {
			t.Errorf("line %d: time.ParseDuration(%q) = %d, %v; table says %d", line, in, got, err, ns)
		}
		// What bridge writes (Duration.String) reads back the same.
		if back, err := time.ParseDuration(got.String()); err != nil || back != got {
			t.Errorf("line %d: %q does not read back: %v %v", line, got.String(), back, err)
		}
	}
	if err := sc.Err(); err != nil || n < 40 {
		t.Fatalf("read %d cases: %v", n, err)
	}
}
