package report

// Figures (Common.Metrics) by which a run says it left deferred work out
// ([schedule] defer_on_metered, defer_on_battery): the daemon owes a
// catch-up run for it once the condition clears.
const (
	// MetricPullsDeferred counts the pulls a refresh run did not make.
	MetricPullsDeferred = "pulls_deferred"
	// MetricIntegrityDeferred is 1 when a verify run skipped its integrity
	// scan.
	MetricIntegrityDeferred = "integrity_deferred"
)
