// Command stategen fills a stowage state DB the way a year of daemon runs
// would, through the real recording code and a fake clock only: run records
// with full reports (service/runs, as the daemon stores them), the refresh
// history (refresh.Observe, the transaction `stowage run refresh` commits),
// verify verdicts (verify.Compare and SaveRecords), the last-use record
// (lastuse.Scan and Forget, as prune calls them) and the desktop notification
// memory (notify.Notifier.NotifyRun against a notification server on the
// session bus in DBUS_SESSION_BUS_ADDRESS, as the daemon calls it).
//
// The jobs follow the default schedule: prune hourly, refresh and verify
// daily, volumes weekly (26.1 runs a day, so 10,000 runs span about 383
// days, ending now). Every -every runs it prints one line of key=value
// figures: the DB file size, bbolt's pages in use and free, the bytes each
// bucket holds, and the generator's own Go heap and RSS.
//
// Usage: dbus-run-session -- stategen -dir STATE_DIR [-runs 10000] [-refs 2000]
package main

import (
	"bufio"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/godbus/dbus/v5"
	bolt "go.etcd.io/bbolt"

	"github.com/stowage/stowage/jobs/prune"
	"github.com/stowage/stowage/jobs/refresh"
	"github.com/stowage/stowage/jobs/shared/lastuse"
	"github.com/stowage/stowage/jobs/shared/layergraph"
	"github.com/stowage/stowage/jobs/shared/report"
	"github.com/stowage/stowage/jobs/shared/state"
	"github.com/stowage/stowage/jobs/verify"
	"github.com/stowage/stowage/jobs/volumes"
	"github.com/stowage/stowage/policy"
	"github.com/stowage/stowage/service/api"
	"github.com/stowage/stowage/service/notify"
	"github.com/stowage/stowage/service/runs"
	"github.com/stowage/stowage/test/testjobs"
)

// Simulation parameters that are not flags: the shape of a busy host.
const (
	containers    = 600  // containers using the images of the first refs
	volumesN      = 40   // volumes listed by each volumes run
	hotShare      = 10   // every hotShare-th reference is a hot tag
	hotChange     = 0.30 // daily chance a hot tag moves (≈110 digests a year: over MaxSeen)
	coldChange    = 0.02 // daily chance another tag moves (≈7 a year)
	multiShare    = 4    // every multiShare-th reference is a manifest list
	unsignedShare = 50   // every unsignedShare-th reference is unsigned (a standing finding)
	flipChance    = 0.001
	churnPerDay   = 3 // references replaced by new ones each day (the 180-day forgetting)
	runsPerDay    = 24 + 1 + 1 + 1.0/7
)

func main() {
	var (
		dir   = flag.String("dir", "", "state directory (state.db is created in it)")
		nRuns = flag.Int("runs", 10000, "runs to record")
		nRefs = flag.Int("refs", 2000, "references in the inventory at any time")
		every = flag.Int("every", 1000, "print figures every this many runs")
		seed  = flag.Uint64("seed", 1, "random seed")
	)
	flag.Parse()
	if *dir == "" {
		fmt.Fprintln(os.Stderr, "usage: stategen -dir STATE_DIR [-runs N] [-refs N] [-every N]")
		os.Exit(2)
	}
	if err := run(*dir, *nRuns, *nRefs, *every, *seed); err != nil {
		fmt.Fprintln(os.Stderr, "stategen:", err)
		os.Exit(1)
	}
}

// ref is one reference of the simulated inventory.
type ref struct {
	name    string
	imageID string // the local image
	local   string // its digest
	remote  string // what the tag points to now
	list    string // manifest list digest (multi-arch references)
	hot     bool
	multi   bool
}

// sim is the simulated host and the real recorders it drives.
type sim struct {
	rng      *rand.Rand
	db       *state.DB
	runs     *runs.Store
	notifier *notify.Notifier
	now      time.Time
	refs     []*ref
	next     int      // serial of the next new reference
	removed  []string // image IDs replaced since the last prune run
	verdicts map[string]bool
	events   int // events reported
	notified int // notifications sent
	maxRep   map[string]int
}

func run(dir string, nRuns, nRefs, every int, seed uint64) error {
	ctx := context.Background()
	db, err := state.Open(dir)
	if err != nil {
		return err
	}
	s := &sim{
		rng: rand.New(rand.NewPCG(seed, seed)), db: db, runs: runs.New(db, runs.DefaultKeep),
		verdicts: map[string]bool{}, maxRep: map[string]int{},
	}
	days := float64(nRuns) / runsPerDay
	s.now = time.Now().UTC().Add(-time.Duration(days * 24 * float64(time.Hour))).Truncate(24 * time.Hour)
	if s.notifier, err = startNotifier(func() time.Time { return s.now }, db); err != nil {
		return err
	}
	for range nRefs {
		s.refs = append(s.refs, s.newRef())
	}
	fmt.Printf("# runs=%d refs=%d start=%s seed=%d keep=%d max_seen=%d history_retention_days=%d seen_retention_days=%d\n",
		nRuns, nRefs, s.now.Format(time.DateOnly), seed, runs.DefaultKeep, refresh.MaxSeen,
		int(refresh.HistoryRetention.Hours()/24), int(notify.SeenRetention.Hours()/24))
	done := 0
	for hour := 0; done < nRuns; hour++ {
		s.now = s.now.Add(time.Hour)
		var jobs []string
		if hour%24 == 3 {
			jobs = append(jobs, report.JobRefresh, report.JobVerify)
		}
		if hour%(24*7) == 4 {
			jobs = append(jobs, report.JobVolumes)
		}
		jobs = append(jobs, report.JobPrune)
		for _, job := range jobs {
			if done == nRuns {
				break
			}
			if err := s.record(ctx, job); err != nil {
				return fmt.Errorf("run %d (%s): %w", done+1, job, err)
			}
			done++
			if done%every == 0 || done == nRuns {
				if err := s.print(done); err != nil {
					return err
				}
			}
		}
	}
	var keys []string
	for k := range s.maxRep {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, " max_report_%s=%d", k, s.maxRep[k])
	}
	fmt.Printf("# end=%s events=%d notifications=%d%s\n", s.now.Format(time.DateOnly), s.events, s.notified, b.String())
	return nil
}

// hexID returns n random hex digits.
func (s *sim) hexID(n int) string {
	b := make([]byte, (n+1)/2)
	for i := range b {
		b[i] = byte(s.rng.UintN(256))
	}
	return hex.EncodeToString(b)[:n]
}

func (s *sim) digest() string { return "sha256:" + s.hexID(64) }

func (s *sim) newRef() *ref {
	i := s.next
	s.next++
	d := s.digest()
	r := &ref{
		name:    fmt.Sprintf("registry%d.example.com/team%03d/service-%05d:v%d", i%7, i%300, i, 1+i%4),
		imageID: s.hexID(64), local: d, remote: d,
		hot: i%hotShare == 0, multi: i%multiShare == 0,
	}
	if r.multi {
		r.list = s.digest()
	}
	return r
}

// record simulates one run of job at s.now and records it the way the
// daemon does: the job's own state first (by the worker), then the run
// record, then the notification.
func (s *sim) record(ctx context.Context, job string) error {
	started := s.now
	var (
		rep    any
		common *report.Common
		err    error
	)
	switch job {
	case report.JobRefresh:
		rep, common, err = s.refresh()
	case report.JobVerify:
		rep, common, err = s.verify()
	case report.JobPrune:
		rep, common, err = s.prune(ctx)
	case report.JobVolumes:
		rep, common = s.volumes()
	}
	if err != nil {
		return err
	}
	raw, err := json.Marshal(rep)
	if err != nil {
		return fmt.Errorf("encoding the report: %w", err)
	}
	s.maxRep[job] = max(s.maxRep[job], len(raw))
	r := &api.Run{
		ID: runs.NewID(job, started), Job: job, Trigger: api.TriggerSchedule,
		Queued: started, Started: started, Finished: started.Add(time.Minute),
		Outcome: api.OutcomeSucceeded, Summary: common.Summary, Report: raw, Common: common,
	}
	if err := s.runs.Put(r); err != nil {
		return fmt.Errorf("recording the run: %w", err)
	}
	s.events += len(common.Events)
	sent, err := s.notifier.NotifyRun(ctx, job, r.ID, common.Events)
	if err != nil {
		return err
	}
	if sent != nil {
		s.notified++
	}
	return nil
}

// refresh moves some tags, pulls what moved (pull mode) and commits what it
// saw for every reference; a few references leave the inventory and new
// ones arrive, so the 180-day forgetting has work.
func (s *sim) refresh() (any, *report.Common, error) {
	for range churnPerDay {
		i := s.rng.IntN(len(s.refs))
		s.removed = append(s.removed, s.refs[i].imageID)
		s.refs[i] = s.newRef()
	}
	obs := make([]refresh.Observed, 0, len(s.refs))
	for _, r := range s.refs {
		p := coldChange
		if r.hot {
			p = hotChange
		}
		if s.rng.Float64() < p {
			r.remote = s.digest()
			if r.multi {
				r.list = s.digest()
			}
		}
		o := refresh.Observed{Reference: r.name, Digest: r.remote, Drift: r.remote != r.local}
		if r.multi {
			o.ListKey, o.Instance = r.list+" linux/amd64/", r.remote
		}
		obs = append(obs, o)
	}
	isNew, err := refresh.Observe(s.db, obs, s.now)
	if err != nil {
		return nil, nil, err
	}
	rep := &refresh.Report{
		Common:     report.Common{Job: report.JobRefresh, Started: s.now, Finished: s.now.Add(time.Minute), Events: []report.Event{}},
		Registries: map[string]refresh.Counters{},
	}
	drifted, pulled := 0, 0
	for i, r := range s.refs {
		res := refresh.Result{
			Reference: r.name, ImageID: r.imageID, LocalDigest: r.local, RemoteDigest: r.remote,
			Status: refresh.StatusCurrent, Mode: policy.RefreshPull, Registry: fmt.Sprintf("registry%d.example.com", i%7),
		}
		if r.multi {
			res.ListDigest = r.list
		}
		if r.remote != r.local {
			drifted++
			res.Status, res.New = refresh.StatusDrifted, isNew[r.name]
			if res.New {
				rep.Events = append(rep.Events, report.Event{
					Kind: report.EventDriftDetected, Severity: report.SeverityNormal,
					Message: fmt.Sprintf("%s now points to %s (local image %.12s)", r.name, r.remote, r.imageID),
					Topic:   "refresh:" + r.name, Image: r.imageID, Reference: r.name, Digest: r.remote,
				})
			}
			// Pull mode: the new image arrives, the old one is left for prune.
			s.removed = append(s.removed, r.imageID)
			r.imageID, r.local = s.hexID(64), r.remote
			res.PulledImageID = r.imageID
			pulled++
			rep.Events = append(rep.Events, report.Event{
				Kind: report.EventImagePulled, Severity: report.SeverityLow,
				Message: fmt.Sprintf("pulled %s (%s); the previous image %.12s is kept", r.name, r.remote, res.ImageID),
				Topic:   "refresh:" + r.name, Image: r.imageID, Reference: r.name,
			})
		}
		rep.Results = append(rep.Results, res)
		c := rep.Registries[res.Registry]
		c.Head++
		rep.Registries[res.Registry] = c
	}
	rep.HeadRequests = len(s.refs)
	rep.Metrics = map[string]float64{"checked": float64(len(s.refs)), "drifted": float64(drifted), "pulled": float64(pulled)}
	rep.Summary = fmt.Sprintf("%d checked, %d drifted, %d pulled", len(s.refs), drifted, pulled)
	return rep, &rep.Common, nil
}

// verify re-checks every reference: a standing set is unsigned, a few flip
// now and then.
func (s *sim) verify() (any, *report.Common, error) {
	prev, err := verify.LoadRecords(s.db)
	if err != nil {
		return nil, nil, err
	}
	results := make([]verify.Result, 0, len(s.refs))
	for i, r := range s.refs {
		res := verify.Result{ImageID: r.imageID, Reference: r.name, Status: verify.StatusAccepted, Reason: "signedBy", Rule: "signedBy"}
		bad := i%unsignedShare == 0
		if s.rng.Float64() < flipChance {
			bad = !bad
		}
		if bad {
			res.Status, res.Reason = verify.StatusUnsigned, "A signature was required, but no signature exists"
		}
		results = append(results, res)
	}
	out, next, events := verify.Compare(prev, results, s.now)
	if err := verify.SaveRecords(s.db, next); err != nil {
		return nil, nil, err
	}
	rep := &verify.Report{
		Common:  report.Common{Job: report.JobVerify, Started: s.now, Finished: s.now.Add(time.Minute), Events: events},
		Mode:    policy.VerifyReport,
		Results: out,
	}
	if rep.Events == nil {
		rep.Events = []report.Event{}
	}
	rep.Summary = fmt.Sprintf("%d names checked, %d events", len(out), len(events))
	return rep, &rep.Common, nil
}

// prune records the containers' image uses, removes the images replaced
// since the last run and lists every image kept, as the prune job does.
func (s *sim) prune(ctx context.Context) (any, *report.Common, error) {
	snap := &layergraph.Snapshot{Taken: s.now}
	for i := range min(containers, len(s.refs)) {
		snap.Containers = append(snap.Containers, layergraph.Container{ID: fmt.Sprintf("%064d", i), ImageID: s.refs[i].imageID, Created: s.now})
	}
	if err := lastuse.Scan(ctx, s.db, snap, nil, s.now); err != nil {
		return nil, nil, err
	}
	rep := &prune.Report{Common: report.Common{Job: report.JobPrune, Started: s.now, Finished: s.now.Add(time.Second), Events: []report.Event{}}}
	var freed int64
	for _, id := range s.removed {
		it := prune.Item{ID: id, Reason: prune.ReasonDangling, Bytes: 40 << 20, LastUsed: s.now.Add(-48 * time.Hour),
			Layers: []string{s.hexID(64), s.hexID(64)}}
		freed += it.Bytes
		it.Cumulative = freed
		rep.Removed = append(rep.Removed, it)
		rep.Events = append(rep.Events, report.Event{Kind: report.EventImageRemoved, Severity: report.SeverityLow,
			Message: fmt.Sprintf("removed image %.12s (dangling)", id), Image: id})
	}
	if err := lastuse.Forget(s.db, s.removed); err != nil {
		return nil, nil, err
	}
	s.removed = s.removed[:0]
	for i, r := range s.refs {
		it := prune.Item{ID: r.imageID, Names: []string{r.name}, Reason: prune.KeptKeepLast, Bytes: 120 << 20, LastUsed: s.now.Add(-time.Duration(i) * time.Minute)}
		if i < containers {
			it.Reason, it.Detail = prune.KeptInUse, fmt.Sprintf("container %064d", i)
		}
		rep.Kept = append(rep.Kept, it)
	}
	rep.FreedBytes, rep.PlannedFreeBytes = freed, freed
	rep.UsageBeforeBytes = int64(len(s.refs))*(120<<20) + freed
	rep.UsageAfterBytes = rep.UsageBeforeBytes - freed
	rep.Metrics = map[string]float64{"removed": float64(len(rep.Removed)), "freed_bytes": float64(freed), "usage_bytes": float64(rep.UsageAfterBytes)}
	rep.Summary = fmt.Sprintf("removed %d images, freed %d bytes", len(rep.Removed), freed)
	return rep, &rep.Common, nil
}

// volumes lists a host's volumes, removing a few anonymous ones.
func (s *sim) volumes() (any, *report.Common) {
	rep := &volumes.Report{Common: report.Common{Job: report.JobVolumes, Started: s.now, Finished: s.now.Add(time.Second), Events: []report.Event{}}, PodmanVersion: "4.3.1"}
	for i := range volumesN {
		it := volumes.Item{Name: s.hexID(64), Reason: volumes.ReasonInUse, Bytes: 1 << 20, Created: s.now.Add(-90 * 24 * time.Hour), Anonymous: true}
		if i < 3 {
			it.Reason = "unused"
			rep.Removed = append(rep.Removed, it)
			rep.FreedBytes += it.Bytes
			rep.Events = append(rep.Events, report.Event{Kind: report.EventVolumeRemoved, Severity: report.SeverityLow, Message: "removed volume " + it.Name, Volume: it.Name})
			continue
		}
		rep.Kept = append(rep.Kept, it)
	}
	rep.Summary = fmt.Sprintf("removed %d volumes", len(rep.Removed))
	return rep, &rep.Common
}

// print writes one line of figures after done runs.
func (s *sim) print(done int) error {
	fi, err := os.Stat(s.db.Path())
	if err != nil {
		return fmt.Errorf("stat: %w", err)
	}
	st, err := boltStats(s.db.Path())
	if err != nil {
		return err
	}
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	rss, err := rssKiB()
	if err != nil {
		return err
	}
	fmt.Printf("runs=%d day=%d db_bytes=%d pages=%d free_pages=%d pending_pages=%d inuse_bytes=%d %s heap_inuse_kib=%d rss_kib=%d\n",
		done, int(float64(done)/runsPerDay), fi.Size(), st.pages, st.free, st.pending, st.inuse, st.buckets, ms.HeapInuse>>10, rss)
	return nil
}

// dbStats are bbolt's figures for the whole file.
type dbStats struct {
	pages, free, pending int
	inuse                int64  // bytes of the pages the buckets use
	buckets              string // bucket_<name>=bytes ...
}

// boltStats opens the DB (no other writer runs meanwhile) and reads the page
// and bucket statistics.
func boltStats(path string) (dbStats, error) {
	var st dbStats
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 30 * time.Second})
	if err != nil {
		return st, fmt.Errorf("opening %s: %w", path, err)
	}
	defer db.Close()
	ps := db.Info().PageSize
	s := db.Stats()
	st.free, st.pending = s.FreePageN, s.PendingPageN
	var parts []string
	err = db.View(func(tx *bolt.Tx) error {
		st.pages = int(tx.Size()) / ps
		return tx.ForEach(func(name []byte, b *bolt.Bucket) error {
			bs := b.Stats()
			n := int64(bs.BranchPageN+bs.BranchOverflowN+bs.LeafPageN+bs.LeafOverflowN) * int64(ps)
			if bs.InlineBucketInuse > 0 {
				n = int64(bs.InlineBucketInuse)
			}
			st.inuse += n
			parts = append(parts, fmt.Sprintf("bucket_%s=%d", strings.ReplaceAll(string(name), ".", "_"), n))
			return nil
		})
	})
	if err != nil {
		return st, fmt.Errorf("reading stats of %s: %w", path, err)
	}
	st.buckets = strings.Join(parts, " ")
	return st, nil
}

// rssKiB is this process's VmRSS.
func rssKiB() (int, error) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			return strconv.Atoi(strings.Fields(v)[0])
		}
	}
	return 0, errors.New("no VmRSS in /proc/self/status")
}

// notificationServer accepts every Notify like a notification daemon.
type notificationServer struct {
	mu   sync.Mutex
	next uint32
}

// Notify implements org.freedesktop.Notifications.Notify.
func (n *notificationServer) Notify(app string, replaces uint32, icon, summary, body string, actions []string,
	hints map[string]dbus.Variant, timeout int32) (uint32, *dbus.Error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if replaces != 0 {
		return replaces, nil
	}
	n.next++
	return n.next, nil
}

// startNotifier serves org.freedesktop.Notifications on the session bus
// and returns a Notifier on a second connection, as the daemon has.
func startNotifier(now func() time.Time, db *state.DB) (*notify.Notifier, error) {
	addr := os.Getenv("DBUS_SESSION_BUS_ADDRESS")
	if addr == "" {
		return nil, errors.New("no session bus: run under dbus-run-session")
	}
	srv, err := dbus.Connect(addr)
	if err != nil {
		return nil, fmt.Errorf("connecting to the session bus: %w", err)
	}
	if err := srv.Export(&notificationServer{}, notify.ServicePath, "org.freedesktop.Notifications"); err != nil {
		return nil, fmt.Errorf("exporting the notification server: %w", err)
	}
	if r, err := srv.RequestName(notify.ServiceName, dbus.NameFlagDoNotQueue); err != nil || r != dbus.RequestNameReplyPrimaryOwner {
		return nil, fmt.Errorf("owning %s: %v %w", notify.ServiceName, r, err)
	}
	conn, err := dbus.Connect(addr)
	if err != nil {
		return nil, fmt.Errorf("connecting to the session bus: %w", err)
	}
	return notify.New(notify.Options{
		Conn: conn, State: db, Clock: funcClock(now), Events: testjobs.Registry().EventKinds(),
		Policy: policy.Notify{Desktop: true, MinUrgency: policy.UrgencyLow},
	})
}

// funcClock is the generator's fake clock as a clock.Clock.
type funcClock func() time.Time

func (f funcClock) Now() time.Time                       { return f() }
func (funcClock) After(d time.Duration) <-chan time.Time { return time.After(d) }
