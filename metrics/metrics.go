// Package metrics watches what a mount does: it is the backend's Observer
// (every API call, every HTTP transfer), keeps the transfers in flight for
// `vspherefs status`, logs the progress of long transfers, and serves it all
// as Prometheus metrics (github.com/prometheus/client_golang).
package metrics

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/vspherefs/vspherefs/backend"
	"github.com/vspherefs/vspherefs/status"
)

// Metrics is one mount's observer and registry.
type Metrics struct {
	Reg      *prometheus.Registry
	Tracker  status.Tracker
	Log      *slog.Logger
	Debug    bool          // log each transfer's host and path
	Progress time.Duration // how often long transfers log their progress; 0: 5s
	// OnProgress, if set, is told the transfers in flight at each tick
	// (systemd's STATUS= line).
	OnProgress func([]status.Transfer)

	calls           *prometheus.CounterVec
	callSeconds     *prometheus.HistogramVec
	transferBytes   *prometheus.CounterVec
	transferSeconds *prometheus.HistogramVec
	transfers       *prometheus.GaugeVec
	sessions        *prometheus.GaugeVec
	commits         *prometheus.CounterVec
	retries         *prometheus.CounterVec

	mu     sync.Mutex
	byCall map[string]int64 // calls by method, for status
	faults map[string]int64 // failed calls by fault, for status
	open   map[string]int64 // sessions held, by kind

	stop chan struct{}
	wg   sync.WaitGroup
	srv  *http.Server
}

// New makes the registry with the Go and process collectors.
func New(log *slog.Logger, debug bool) *Metrics {
	m := &Metrics{
		Reg: prometheus.NewRegistry(), Log: log, Debug: debug,
		byCall: map[string]int64{}, faults: map[string]int64{}, open: map[string]int64{},
		stop: make(chan struct{}),
	}
	m.calls = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "vspherefs_api_calls_total", Help: "API calls by method and outcome (ok or the fault's name).",
	}, []string{"method", "outcome"})
	m.callSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "vspherefs_api_call_duration_seconds", Help: "API call latency by method.",
		Buckets: prometheus.ExponentialBuckets(0.001, 4, 10),
	}, []string{"method"})
	m.transferBytes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "vspherefs_transfer_bytes_total", Help: "Bytes moved by HTTP transfers, by tree (libraries, vms, exports) and direction (read: from vSphere, written: to it).",
	}, []string{"tree", "direction"})
	m.transferSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "vspherefs_transfer_duration_seconds", Help: "Duration of HTTP transfers, from request to the end of the body, by tree and direction.",
		Buckets: prometheus.ExponentialBuckets(0.005, 4, 10),
	}, []string{"tree", "direction"})
	m.transfers = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "vspherefs_transfers_in_flight", Help: "HTTP transfers running, by tree and direction.",
	}, []string{"tree", "direction"})
	m.sessions = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "vspherefs_sessions_active", Help: "Download and update sessions and export leases held (created and not yet ended), by kind.",
	}, []string{"kind"})
	m.commits = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "vspherefs_library_commits_total", Help: "Library update sessions ended, by outcome (ok: completed; failed: failed or cancelled).",
	}, []string{"outcome"})
	m.retries = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "vspherefs_retries_total", Help: "Calls and transfers tried again (after a 503, a reset), by method.",
	}, []string{"method"})
	m.Reg.MustRegister(m.calls, m.callSeconds, m.transferBytes, m.transferSeconds, m.transfers, m.sessions, m.commits, m.retries,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// sessionCalls: the calls that open (+1) and end (-1) a session of a kind.
var sessionCalls = map[string]struct {
	kind  string
	delta int64
}{
	"download-session:create": {"download", 1}, "download-session:delete": {"download", -1},
	"updatesession:create": {"update", 1}, "updatesession:complete": {"update", -1},
	"updatesession:fail": {"update", -1}, "updatesession:cancel": {"update", -1},
}

// Call counts one API call (backend.Observer).
func (m *Metrics) Call(call string, took time.Duration, err error) {
	outcome := "ok"
	if err != nil {
		outcome = backend.FaultName(err)
	}
	m.calls.WithLabelValues(call, outcome).Inc()
	m.callSeconds.WithLabelValues(call).Observe(took.Seconds())
	m.mu.Lock()
	m.byCall[call]++
	if err != nil {
		m.faults[outcome]++
	}
	if s, ok := sessionCalls[call]; ok && err == nil {
		m.open[s.kind] = max(0, m.open[s.kind]+s.delta)
		m.sessions.WithLabelValues(s.kind).Set(float64(m.open[s.kind]))
	}
	m.mu.Unlock()
	switch {
	case call == "updatesession:complete" && err == nil:
		m.commits.WithLabelValues("ok").Inc()
	case (call == "updatesession:fail" || call == "updatesession:cancel") && err == nil:
		m.commits.WithLabelValues("failed").Inc()
	}
}

// Retry counts one retry (backend.RetryObserver).
func (m *Metrics) Retry(call string) { m.retries.WithLabelValues(call).Inc() }

// Counts returns the calls by method, the faults by name and the sessions held.
func (m *Metrics) Counts() (calls, faults, sessions map[string]int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	cp := func(in map[string]int64) map[string]int64 {
		out := make(map[string]int64, len(in))
		for k, v := range in {
			out[k] = v
		}
		return out
	}
	return cp(m.byCall), cp(m.faults), cp(m.open)
}

// GaugeFunc registers a gauge read when scraped (cache, spool, recovery files).
func (m *Metrics) GaugeFunc(name, help string, f func() float64) {
	m.Reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f))
}

// CounterFunc registers a counter read when scraped.
func (m *Metrics) CounterFunc(name, help string, f func() float64) {
	m.Reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, f))
}

// Start logs the progress of long transfers and, if addr is set, serves
// /metrics there. Close ends both.
func (m *Metrics) Start(addr string) error {
	if addr != "" {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return err
		}
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(m.Reg, promhttp.HandlerOpts{}))
		m.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			if err := m.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				m.Log.Error("metrics server", "err", err)
			}
		}()
	}
	m.wg.Add(1)
	go m.progress()
	return nil
}

// Close stops the metrics server and the progress log.
func (m *Metrics) Close() {
	close(m.stop)
	if m.srv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = m.srv.Shutdown(ctx)
		cancel()
	}
	m.wg.Wait()
}

// progress logs, every few seconds, each transfer that has run that long.
func (m *Metrics) progress() {
	defer m.wg.Done()
	every := m.Progress
	if every <= 0 {
		every = 5 * time.Second
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-m.stop:
			return
		case <-t.C:
		}
		all := m.Tracker.Snapshot()
		if m.OnProgress != nil {
			m.OnProgress(all)
		}
		for _, tr := range all {
			if time.Since(tr.Started) < every {
				continue
			}
			args := []any{"kind", tr.Kind, "path", tr.Path, "state", tr.State, "bytes", tr.Done,
				"rate", humanRate(tr.Rate), "elapsed", time.Since(tr.Started).Round(time.Second)}
			if tr.Total >= 0 {
				args = append(args, "total", tr.Total)
			}
			if tr.ETA > 0 {
				args = append(args, "eta", (time.Duration(tr.ETA) * time.Second).Round(time.Second))
			}
			m.Log.Info("transfer progress", args...)
		}
	}
}

func humanRate(r float64) string {
	units := []string{"B/s", "KiB/s", "MiB/s", "GiB/s"}
	i := 0
	for r >= 1024 && i < len(units)-1 {
		r /= 1024
		i++
	}
	return strings.TrimSuffix(strings.TrimSuffix(strconvF(r), ".0"), ".00") + " " + units[i]
}

// SortedKeys is a helper for printing maps in a stable order.
func SortedKeys(m map[string]int64) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
