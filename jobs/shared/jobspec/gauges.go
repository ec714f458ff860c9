package jobspec

// Gauge is a metric family a job exports from its last report's figures
// (report.Common.Metrics); the daemon keeps them in the state database
// and the metrics package serves them. A figure a report lacks is not
// exported (e.g. the quota ones without a quota).
type Gauge struct {
	// Name is the family's name: stowage_JOB_….
	Name string
	Help string
	// Label is the family's one label, "" for none.
	Label string
	// Figures are the report figures the family's series come from.
	Figures []Figure
}

// Figure maps one report figure onto a series.
type Figure struct {
	// Key is the figure's key in the report's Metrics.
	Key string
	// Label is the series' value of the gauge's label ("" without one).
	Label string
	// OmitZero drops the series when the figure is 0 (a timestamp that
	// means "none").
	OmitZero bool
}
