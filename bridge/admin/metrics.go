package admin

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// PoolStats is what the metrics read from dispatch at scrape time.
type PoolStats interface {
	Readiness
	// Waiting is the number of requests queued for a slot.
	Waiting() int
	// ReadyWorkers is the number of workers taking requests.
	ReadyWorkers() int
}

// Metrics are bridge's Prometheus metrics, in a registry of their own.
type Metrics struct {
	reg      *prometheus.Registry
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	inFlight prometheus.Gauge
	restarts *prometheus.CounterVec
	reloads  *prometheus.CounterVec
}

// NewMetrics registers bridge's metrics; gauges of the pool are read when
// Prometheus scrapes.
func NewMetrics(pool PoolStats) *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bridge_requests_total", Help: "Requests answered, by runner and HTTP status (499: client went away).",
		}, []string{"runner", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "bridge_request_duration_seconds", Help: "Time from request to the end of the response.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}, []string{"runner"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "bridge_requests_in_flight", Help: "Requests being served or waiting for a slot.",
		}),
		restarts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bridge_worker_restarts_total", Help: "Runner processes replaced, by reason.",
		}, []string{"reason"}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bridge_reloads_total", Help: "Reloads (SIGHUP, POST /reload), by result: ok, or failed (the old generation kept serving).",
		}, []string{"result"}),
	}
	m.reloads.WithLabelValues("ok")
	m.reloads.WithLabelValues("failed")
	m.reg.MustRegister(m.requests, m.duration, m.inFlight, m.restarts, m.reloads,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "bridge_queue_depth", Help: "Requests waiting for a free slot.",
		}, func() float64 { return float64(pool.Waiting()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "bridge_workers_ready", Help: "Runner processes taking requests.",
		}, func() float64 { return float64(pool.ReadyWorkers()) }),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return m
}

// Begin counts a request in flight; call the returned func when it is done.
func (m *Metrics) Begin() func(runner string, status int, d time.Duration) {
	m.inFlight.Inc()
	return func(runner string, status int, d time.Duration) {
		m.inFlight.Dec()
		m.requests.WithLabelValues(runner, strconv.Itoa(status)).Inc()
		m.duration.WithLabelValues(runner).Observe(d.Seconds())
	}
}

// WatchWorkers adds the worker gauges (states, memory, generation), read
// from w at each scrape.
func (m *Metrics) WatchWorkers(w Workers) { m.reg.MustRegister(newWorkerCollector(w)) }

// Reloaded counts a reload.
func (m *Metrics) Reloaded(ok bool) {
	if ok {
		m.reloads.WithLabelValues("ok").Inc()
	} else {
		m.reloads.WithLabelValues("failed").Inc()
	}
}

// Restarted counts a replaced worker.
func (m *Metrics) Restarted(reason string) { m.restarts.WithLabelValues(reason).Inc() }

func (m *Metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}
