package supervise

import (
	"testing"

	bridgev1 "bridge/proto/bridge/v1"
)

// A worker gets threads + pipeline streams only as far as its runner says it
// takes them; a runner that predates Describe.slots gets one per thread.
func TestSlotsFollowTheRunner(t *testing.T) {
	for _, c := range []struct {
		threads, pipeline, runner, want int
	}{
		{1, 8, 0, 1},   // old contract: one stream per thread
		{1, 8, 9, 9},   // runner takes what bridge offers
		{1, 8, 4, 4},   // runner takes fewer
		{2, 8, 64, 10}, // bridge offers fewer
		{2, 0, 64, 2},  // --pipeline 0
		{4, 8, 2, 4},   // a runner saying less than its threads still gets them
	} {
		s := &Supervisor{cfg: Config{Threads: c.threads, Pipeline: c.pipeline}}
		got := s.slots(&bridgev1.DescribeResponse{Slots: uint32(c.runner)})
		if got != c.want {
			t.Errorf("threads %d pipeline %d runner slots %d: %d streams, want %d", c.threads, c.pipeline, c.runner, got, c.want)
		}
	}
}

func TestMallocDefaultsKeepTheUsersSettings(t *testing.T) {
	got := mallocDefaults([]string{"PATH=/bin", "MALLOC_TRIM_THRESHOLD_=1"})
	if len(got) != 1 || got[0] != "MALLOC_MMAP_THRESHOLD_=4194304" {
		t.Fatalf("got %q: want only the mmap threshold added", got)
	}
	if got := mallocDefaults(nil); len(got) != 2 {
		t.Fatalf("got %q: want both settings", got)
	}
}
