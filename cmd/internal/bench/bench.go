// Package bench is the engine of `seatctl bench`: it measures seatd the way
// a user would run it (the real seatd binary as a child process, the
// machine's Postgres, the embedded JetStream server) and checks that the
// run kept every promise before it reports a number.
//
// Each mode gets a fresh database and data directory of its own, provisions
// its organizations, customers and pools through storage's provisioning
// methods, drives its load, waits until every request has an outcome, and
// runs Verify. A mode whose verification fails prints the failure and no
// figures.
package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/seatd/seatd/storage"
	"github.com/seatd/seatd/storage/pgcluster"
	"github.com/seatd/seatd/storage/secret"
)

// Modes are the benchmark modes, in the order `--mode all` runs them.
var Modes = []string{"direct", "queue", "http-async", "http-sync", "hot", "import", "mail"}

// DefaultRequests is each mode's size when --requests is not given: each
// finishes in about two minutes or less on a busy 2-core machine (import
// is the 100,000-row file).
var DefaultRequests = map[string]int{
	"direct": 10000, "queue": 10000, "http-async": 10000, "http-sync": 5000,
	"hot": 5000, "import": 100000, "mail": 2000,
}

// Options configure a run.
type Options struct {
	Modes        []string
	Requests     int     // 0: the mode's default
	Pools        int     // pools the load is spread over (hot and import: 1)
	SeatsPerPool int     // 0: enough for every request, so none is refused
	Clients      int     // concurrent clients (direct, http-async, http-sync)
	ClaimRatio   float64 // share of assigns with immediate_claim (no invitation)
	Timeout      time.Duration

	AdminURL       string   // a database on the Postgres server to use; each mode creates its own database there
	Seatd          string   // the seatd binary
	Seatctl        string   // the seatctl binary (import mode)
	SeatdEnv       []string // extra KEY=VALUE settings for seatd children (and seatctl)
	PgbenchCeiling string   // script printing pgbench's "tps = N" line, run before each mode; empty: not run
	Keep           bool     // keep each mode's database and data directory

	Stdout io.Writer // one JSON line per mode
	Stderr io.Writer // human summaries and progress
}

// Check validates the options that come from flags and fills in
// defaults; Run calls it too.
func (o *Options) Check() error {
	if o.Timeout == 0 {
		o.Timeout = 15 * time.Minute
	}
	if o.Stdout == nil {
		o.Stdout = os.Stdout
	}
	if o.Stderr == nil {
		o.Stderr = os.Stderr
	}
	switch {
	case o.Requests < 0, o.Pools < 1, o.SeatsPerPool < 0, o.Clients < 1:
		return errors.New("--requests, --seats-per-pool must be >= 0, --pools and --clients >= 1")
	case o.ClaimRatio < 0 || o.ClaimRatio > 1:
		return errors.New("--claim-ratio must be between 0 and 1")
	}
	for _, kv := range o.SeatdEnv {
		if k, _, ok := strings.Cut(kv, "="); !ok || k == "" {
			return fmt.Errorf("--seatd-env %q is not KEY=VALUE", kv)
		}
	}
	for _, m := range o.Modes {
		if _, ok := DefaultRequests[m]; !ok {
			return fmt.Errorf("unknown mode %q (want all or one of %s)", m, strings.Join(Modes, ", "))
		}
	}
	if len(o.Modes) == 0 {
		return errors.New("no mode")
	}
	return nil
}

// Result is one mode's JSON line. Times are wall clock, in seconds to the
// millisecond; latencies are in milliseconds; memory in MiB.
type Result struct {
	Mode     string  `json:"mode"`
	Requests int     `json:"requests"`
	Seconds  float64 `json:"seconds"`
	PerS     float64 `json:"per_s"`
	P50ms    float64 `json:"p50_ms"`
	P99ms    float64 `json:"p99_ms"`
	// SeatdPeakRSSMB is the peak RSS of the seatd process that did the
	// work (SeatdRSSOf says which), or of this process for in-process
	// modes.
	SeatdPeakRSSMB float64 `json:"seatd_peak_rss_mb"`
	SeatdRSSOf     string  `json:"seatd_rss_of"`

	Pools        int     `json:"pools"`
	SeatsPerPool int     `json:"seats_per_pool"`
	Clients      int     `json:"clients,omitempty"`
	ClaimRatio   float64 `json:"claim_ratio"`
	Applied      int     `json:"applied"`
	Refused      int     `json:"refused"`
	DeadLettered int     `json:"dead_lettered"`
	Verified     bool    `json:"verified"`

	// queue, hot: how fast the backlog went into JetStream.
	PublishedPerS float64 `json:"published_per_s,omitempty"`
	// http-async: per_s, p50 and p99 are the accept rate and latency;
	// these are the time until every accepted request was applied.
	AppliedSeconds float64 `json:"applied_seconds,omitempty"`
	AppliedPerS    float64 `json:"applied_per_s,omitempty"`
	AppliedP50ms   float64 `json:"applied_p50_ms,omitempty"`
	AppliedP99ms   float64 `json:"applied_p99_ms,omitempty"`
	// http-sync: answers that were 202 (the sync wait ran out).
	TimedOut int `json:"timed_out,omitempty"`
	// import
	SeatctlPeakRSSMB float64 `json:"seatctl_peak_rss_mb,omitempty"`
	// mail: invitations per second through each sender; per_s and
	// mail_per_s are both together.
	MailPerS float64 `json:"mail_per_s,omitempty"`
	DropPerS float64 `json:"drop_per_s,omitempty"`
	SMTPPerS float64 `json:"smtp_per_s,omitempty"`

	PgbenchTPS   float64 `json:"pgbench_tps,omitempty"`
	PgbenchRatio float64 `json:"pgbench_ratio,omitempty"` // per_s / pgbench_tps
	// AppliedPgbenchRatio is applied_per_s / pgbench_tps (http-async).
	AppliedPgbenchRatio float64 `json:"applied_pgbench_ratio,omitempty"`
	NATSFsync           string  `json:"nats_fsync"`
	// The machine: its CPUs and its load average when the mode started
	// (other work on it makes every figure smaller).
	CPUs    int     `json:"cpus"`
	LoadAvg float64 `json:"loadavg_1m"`
}

// Run runs every mode in o.Modes. Each mode prints a summary to Stderr and
// its JSON line to Stdout; a mode that fails (its verification included)
// prints why and no line. Run returns an error when any mode failed.
func Run(ctx context.Context, o Options) error {
	if err := o.Check(); err != nil {
		return err
	}
	if o.AdminURL == "" || o.Seatd == "" {
		return errors.New("bench: no database URL or no seatd binary")
	}
	var failed []string
	for _, mode := range o.Modes {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		// The yardstick runs right before each mode: on a shared machine
		// the ceiling moves with everything else.
		var tps float64
		if o.PgbenchCeiling != "" {
			var err error
			if tps, err = pgbenchCeiling(ctx, o.PgbenchCeiling); err != nil {
				return err
			}
			_, _ = fmt.Fprintf(o.Stderr, "pgbench-ceiling before %s: %.0f tps\n", mode, tps)
		}
		res, err := runMode(ctx, &o, mode)
		if err != nil {
			_, _ = fmt.Fprintf(o.Stderr, "bench %s: FAILED: %v\n", mode, err)
			failed = append(failed, mode)
			continue
		}
		if tps > 0 {
			res.PgbenchTPS = round(tps)
			res.PgbenchRatio = math.Round(res.PerS/tps*1000) / 1000
			if res.AppliedPerS > 0 {
				res.AppliedPgbenchRatio = math.Round(res.AppliedPerS/tps*1000) / 1000
			}
		}
		_, _ = fmt.Fprintln(o.Stderr, summary(res))
		b, err := json.Marshal(res)
		if err != nil {
			return err
		}
		if _, err := fmt.Fprintf(o.Stdout, "%s\n", b); err != nil {
			return err
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("bench failed: %s", strings.Join(failed, ", "))
	}
	return nil
}

func summary(r Result) string {
	var b strings.Builder
	fmt.Fprintf(&b, "bench %s: %d requests in %.1f s: %.0f/s, p50 %.1f ms, p99 %.1f ms; seatd peak RSS %.0f MiB (%s)",
		r.Mode, r.Requests, r.Seconds, r.PerS, r.P50ms, r.P99ms, r.SeatdPeakRSSMB, r.SeatdRSSOf)
	if r.AppliedPerS > 0 {
		fmt.Fprintf(&b, "; all applied after %.1f s: %.0f/s (submit→applied p50 %.0f ms, p99 %.0f ms)",
			r.AppliedSeconds, r.AppliedPerS, r.AppliedP50ms, r.AppliedP99ms)
	}
	if r.PublishedPerS > 0 {
		fmt.Fprintf(&b, "; published %.0f/s", r.PublishedPerS)
	}
	if r.SeatctlPeakRSSMB > 0 {
		fmt.Fprintf(&b, "; seatctl peak RSS %.0f MiB", r.SeatctlPeakRSSMB)
	}
	if r.MailPerS > 0 {
		fmt.Fprintf(&b, "; mail drop %.0f/s, SMTP %.0f/s", r.DropPerS, r.SMTPPerS)
	}
	if r.TimedOut > 0 {
		fmt.Fprintf(&b, "; %d answered 202 after the sync timeout", r.TimedOut)
	}
	if r.PgbenchTPS > 0 {
		fmt.Fprintf(&b, "; pgbench-ceiling %.0f tps, ratio %.2f", r.PgbenchTPS, r.PgbenchRatio)
		if r.AppliedPgbenchRatio > 0 {
			fmt.Fprintf(&b, " (applied %.2f)", r.AppliedPgbenchRatio)
		}
	}
	fmt.Fprintf(&b, "\n  machine: %d CPUs, load average %.2f at the start", r.CPUs, r.LoadAvg)
	fmt.Fprintf(&b, "\n  verified: %d applied, %d refused, %d dead-lettered; no pool over capacity, no duplicate seat",
		r.Applied, r.Refused, r.DeadLettered)
	return b.String()
}

var tpsLine = regexp.MustCompile(`tps = ([0-9]+(?:\.[0-9]+)?)`)

// pgbenchCeiling runs the script and returns the tps it printed.
func pgbenchCeiling(ctx context.Context, path string) (float64, error) {
	out, err := exec.CommandContext(ctx, path).CombinedOutput()
	if err != nil {
		return 0, fmt.Errorf("pgbench ceiling %s: %v: %s", path, err, out)
	}
	m := tpsLine.FindSubmatch(out)
	if m == nil {
		return 0, fmt.Errorf("pgbench ceiling %s printed no tps line: %s", path, out)
	}
	return strconv.ParseFloat(string(m[1]), 64)
}

// runMode sets a mode's environment up, runs it and tears it down.
func runMode(ctx context.Context, o *Options, mode string) (Result, error) {
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	r, err := newRun(ctx, o, mode)
	if err != nil {
		return Result{}, err
	}
	defer r.close()
	_, _ = fmt.Fprintf(o.Stderr, "bench %s: %d requests over %d pools of %d seats, database %s, data dir %s\n",
		mode, r.n, r.pools, r.seats, r.dbName, r.dataDir)
	res := Result{Mode: mode, Requests: r.n, Pools: r.pools, SeatsPerPool: r.seats, ClaimRatio: o.ClaimRatio,
		NATSFsync: r.setting("SEATD_NATS_FSYNC", "always"), CPUs: runtime.NumCPU(), LoadAvg: loadAvg()}
	switch mode {
	case "direct":
		err = r.direct(ctx, &res)
	case "queue", "hot":
		err = r.queue(ctx, &res)
	case "http-async":
		err = r.httpAsync(ctx, &res)
	case "http-sync":
		err = r.httpSync(ctx, &res)
	case "import":
		err = r.importFile(ctx, &res)
	case "mail":
		err = r.mail(ctx, &res)
	}
	if err != nil {
		return Result{}, err
	}
	vctx, vcancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer vcancel()
	out, err := Verify(vctx, r.db, r.expect)
	if err != nil {
		return Result{}, fmt.Errorf("verification failed (%s):\n%w", out, err)
	}
	res.Applied, res.Refused, res.DeadLettered, res.Verified = out.Applied, out.Refused, out.DeadLettered, true
	res.Seconds, res.PerS, res.SeatdPeakRSSMB = math.Round(res.Seconds*1000)/1000, round(res.PerS), round(res.SeatdPeakRSSMB)
	return res, nil
}

// run is one mode's environment: its database, data directory, secret
// and the processes it started.
type run struct {
	o                      *Options
	mode                   string
	n, pools, seats        int
	dbName, dbURL, dataDir string
	secret                 string
	keys                   secret.Keys
	db                     *storage.DB
	children               []*child
	expect                 Expect
	log                    *slog.Logger
	created, dirCreated    bool
}

func newRun(ctx context.Context, o *Options, mode string) (*run, error) {
	r := &run{o: o, mode: mode, n: o.Requests, pools: o.Pools, seats: o.SeatsPerPool,
		log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	if r.n == 0 {
		r.n = DefaultRequests[mode]
	}
	if mode == "hot" || mode == "import" {
		r.pools = 1
	}
	if mode == "mail" && r.pools > r.n {
		r.pools = r.n
	}
	r.pools = min(r.pools, r.n)
	if r.seats == 0 || mode == "mail" { // mail measures invitations: none refused
		r.seats = (r.n + r.pools - 1) / r.pools
		if mode == "mail" { // two loads of n each
			r.seats *= 2
		}
	}
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, err
	}
	r.secret = hex.EncodeToString(key)
	var err error
	if r.keys, err = secret.NewKeys(key); err != nil {
		return nil, err
	}
	suffix := hex.EncodeToString(key[:4])
	r.dbName = "seatd_bench_" + strings.ReplaceAll(mode, "-", "_") + "_" + suffix
	if r.dataDir, err = os.MkdirTemp("", "seatd-bench-"+mode+"-"); err != nil {
		return nil, err
	}
	r.dirCreated = true
	if err := pgcluster.CreateDatabase(ctx, o.AdminURL, r.dbName); err != nil {
		r.close()
		return nil, err
	}
	r.created = true
	r.dbURL = withDatabase(o.AdminURL, r.dbName)
	if err := storage.Migrate(ctx, r.dbURL); err != nil {
		r.close()
		return nil, err
	}
	if r.db, err = storage.Open(ctx, r.dbURL); err != nil {
		r.close()
		return nil, err
	}
	return r, nil
}

func (r *run) close() {
	for i := len(r.children) - 1; i >= 0; i-- {
		r.children[i].stop(30 * time.Second)
	}
	if r.db != nil {
		r.db.Close()
	}
	if r.o.Keep {
		_, _ = fmt.Fprintf(r.o.Stderr, "bench %s: kept database %s and data dir %s\n", r.mode, r.dbName, r.dataDir)
		return
	}
	if r.created {
		if err := dropDatabase(r.o.AdminURL, r.dbName); err != nil {
			_, _ = fmt.Fprintf(r.o.Stderr, "bench %s: dropping database %s: %v\n", r.mode, r.dbName, err)
		}
	}
	if r.dirCreated {
		_ = os.RemoveAll(r.dataDir)
	}
}

// setting is a seatd setting as the children get it.
func (r *run) setting(key, def string) string {
	v := def
	for _, kv := range r.o.SeatdEnv {
		if k, val, _ := strings.Cut(kv, "="); k == key {
			v = val
		}
	}
	return v
}

// env is the environment of every process of this mode's deployment.
func (r *run) env(extra ...string) []string {
	base := []string{
		"DATABASE_URL=" + r.dbURL,
		"SEATD_DATA_DIR=" + r.dataDir,
		"SEATD_SECRET_KEY=" + r.secret,
		// The load comes from a handful of sessions: the per-token limit
		// would measure the limiter.
		"SEATD_RATE_LIMIT=0",
		"SEATD_RATE_BURST=1000000",
		"SEATD_LOG_LEVEL=info",
	}
	return childEnv(append(append(base, r.o.SeatdEnv...), extra...)...)
}

// startSeatd starts `seatd role` in this mode's deployment.
func (r *run) startSeatd(name, role string, extra ...string) (*child, error) {
	c, err := startChild(name, r.o.Seatd, r.env(extra...), filepath.Join(r.dataDir, name+".log"), role)
	if err != nil {
		return nil, err
	}
	r.children = append(r.children, c)
	return c, nil
}

// stats are latency percentiles in milliseconds.
func percentiles(d []time.Duration) (p50, p99 float64) {
	if len(d) == 0 {
		return 0, 0
	}
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	at := func(q float64) float64 {
		i := int(math.Ceil(q*float64(len(s)))) - 1
		return float64(s[max(i, 0)].Microseconds()) / 1000
	}
	return round(at(0.50)), round(at(0.99))
}

func round(f float64) float64 { return math.Round(f*100) / 100 }

// loadAvg is the machine's 1-minute load average, 0 when unknown.
func loadAvg() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	f, _ := strconv.ParseFloat(strings.Fields(string(b) + " 0")[0], 64)
	return f
}
