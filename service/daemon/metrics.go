package daemon

import (
	"log/slog"
	"maps"
	"net/http"
	"time"

	"github.com/stowage/stowage/service/api"
	"github.com/stowage/stowage/service/metrics"
	"github.com/stowage/stowage/service/scheduler"
)

// periodsOf are the schedule periods of cfg's scheduled jobs.
func periodsOf(cfg scheduler.Config) map[string]time.Duration {
	now := time.Now()
	out := map[string]time.Duration{}
	for _, j := range cfg.Jobs {
		if p := metrics.Period(j.Schedule, now); p > 0 {
			out[j.Name] = p
		}
	}
	return out
}

// updateMetrics rebuilds the metrics from the state database and the
// policy in force and writes the textfile, if the policy asks for one. It
// runs at start, after every finished non-dry run and after every reload.
// When the state database cannot be read the previous figures (and file)
// stay: counters read as zero would look like a reset.
func (d *Daemon) updateMetrics() {
	d.metricsMu.Lock()
	defer d.metricsMu.Unlock()
	stats, err := d.opts.Runs.Stats()
	if err != nil {
		d.log.Warn("reading run statistics for the metrics; metrics not updated", "err", err)
		return
	}
	d.mu.Lock()
	in := metrics.Input{
		Last: make(map[string]*api.Run, len(d.last)), Stats: stats,
		Periods: maps.Clone(d.periods), PolicyInvalid: d.policyErr != "",
	}
	for job, r := range d.last {
		in.Last[job] = copyRun(r)
	}
	setting := d.snap.Policy.Metrics.Textfile
	d.mu.Unlock()
	d.metrics.Update(in)

	path, why := metrics.ResolveTextfile(setting, d.opts.System, d.opts.NodeExporterDir)
	if path == "" {
		d.log.Debug("no metrics textfile", "reason", why)
		return
	}
	if err := metrics.WriteTextfile(path, d.metrics.File()); err != nil {
		d.log.Warn("writing the metrics textfile", "path", path, "err", err)
		return
	}
	d.log.Debug("metrics textfile written", "path", path)
}

// metricsServer serves GET /metrics and nothing else on the metrics socket.
// Its connections are not counted as activity: a Prometheus scraping every
// few seconds must not keep an idle daemon up (the socket starts it again
// on the next scrape).
func (d *Daemon) metricsServer() *http.Server {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", d.metrics.Handler())
	return &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       time.Minute,
		ErrorLog:          slog.NewLogLogger(d.log.Handler(), slog.LevelWarn),
	}
}
