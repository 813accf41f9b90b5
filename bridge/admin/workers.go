package admin

import (
	"github.com/prometheus/client_golang/prometheus"

	"bridge/bridge/supervise"
)

// Workers is what the admin endpoints read from supervision.
type Workers interface {
	// States lists every worker of every generation.
	States() []supervise.WorkerState
	// Generation is the number of the generation serving now.
	Generation() int
}

// workerStates are the only states bridge_workers reports, so a state with
// no worker shows as 0 instead of vanishing.
var workerStates = []string{"idle", "busy", "suspended", "draining", "backoff", "starting"}

// workerCollector reads worker states and memory when Prometheus scrapes:
// nothing is kept between scrapes, so replaced workers leave no stale series.
type workerCollector struct {
	workers Workers
	byState *prometheus.Desc
	rss     *prometheus.Desc
	gen     *prometheus.Desc
}

func newWorkerCollector(w Workers) *workerCollector {
	return &workerCollector{
		workers: w,
		byState: prometheus.NewDesc("bridge_workers", "Runner processes by state: idle, busy, suspended (being checked), draining (recycled or reloaded), backoff (crash loop, waiting to restart), starting.", []string{"state"}, nil),
		rss:     prometheus.NewDesc("bridge_worker_rss_bytes", "Resident memory of each runner's process group (the runner and its children).", []string{"worker"}, nil),
		gen:     prometheus.NewDesc("bridge_generation", "Worker generation serving now; each successful reload adds one.", nil, nil),
	}
}

func (c *workerCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.byState
	ch <- c.rss
	ch <- c.gen
}

func (c *workerCollector) Collect(ch chan<- prometheus.Metric) {
	counts := map[string]int{}
	for _, st := range c.workers.States() {
		counts[st.State]++
		if st.PID > 0 {
			ch <- prometheus.MustNewConstMetric(c.rss, prometheus.GaugeValue, float64(st.RSS), st.Name)
		}
	}
	for _, s := range workerStates {
		ch <- prometheus.MustNewConstMetric(c.byState, prometheus.GaugeValue, float64(counts[s]), s)
	}
	ch <- prometheus.MustNewConstMetric(c.gen, prometheus.GaugeValue, float64(c.workers.Generation()))
}
