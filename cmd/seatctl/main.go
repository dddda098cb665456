// Command seatctl is seatd's operator CLI: provisioning, seat inspection,
// bulk import, dead letters and pipeline status. Every command prints one
// JSON object on stdout (status prints tables unless --json; errors go to
// stderr with a non-zero exit), so scripts and tests can drive it. It
// reads the same environment as seatd (DATABASE_URL, NATS_URL,
// SEATD_DATA_DIR, ...) and so finds the same database.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/seatd/seatd/cmd/internal/config"
	"github.com/seatd/seatd/events"
	"github.com/seatd/seatd/storage"
)

const usage = `usage: seatctl COMMAND [flags]

  org create --name NAME [--seat-pricing=true|false] [--member-model] [--claim-return-url URL]
  org update ORG [--claim-return-url URL] [--seat-pricing=true|false]   (at least one; "" clears the URL)
  customer create --org ORG --email EMAIL [--external-id EXT]
  member create --customer CUST --email EMAIL [--role owner|billing_manager|member] [--name NAME] [--external-id EXT]
  product create --org ORG --name NAME [--description TEXT] [--interval month|year|week|day|none] [--interval-count N]
  product list --org ORG
  subscription create --customer CUST --seats N --product PRODUCT [--status active|canceled] [--amount CENTS] [--currency usd] [--started-at TIME]
  subscription set-seats SUB N
  order create --customer CUST --seats N --product PRODUCT [--status paid|pending]
  checkout create (--subscription SUB | --order ORD)
  session create (--customer CUST | --member MEM) [--scope S]... [--ttl 1h]
  token create --org ORG --scope S [--scope S] [--expires-in 30d] [--comment TEXT]
  token list --org ORG | token revoke ID
  seat show SEAT
  import (--subscription SUB | --order ORD) [--dry-run] [--report PATH] [--timeout 10m] [--in-flight N] FILE|-
  dlq list | dlq show ID | dlq replay (ID | --all) | dlq purge
  status [--json] [--pools 5] [--max-queued-age 2m] [--max-outbox-age 1m] [--max-mail-age 15m]
  webhook create --org ORG --url URL [--events customer_seat.assigned,...]
  webhook list --org ORG | webhook delete ID | webhook rotate-secret ID | webhook enable ID
  webhook deliveries ID [--status S] [--limit N]
  webhook redeliver (DELIVERY | --endpoint ID)
  bench --mode MODE[,MODE...]|all [--requests N] [--pools N] [--clients N] [--pgbench-ceiling PATH]

Configuration comes from the same environment as seatd (DATABASE_URL,
NATS_URL, SEATD_DATA_DIR, SEATD_SECRET_KEY).`

// exitError carries an exit status other than 1.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

func main() {
	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer cancel()
	err := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	var ee exitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		os.Exit(ee.code)
	default:
		fmt.Fprintln(os.Stderr, "seatctl:", err)
		os.Exit(1)
	}
}

// env is what every command works with.
type env struct {
	ctx    context.Context
	cfg    config.Config
	log    *slog.Logger
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
	db     *storage.DB
	close  []func()
}

func (e *env) open() error {
	url, stop, err := e.cfg.Database(e.ctx, e.log)
	if err != nil {
		return err
	}
	e.close = append(e.close, func() { _ = stop() })
	if err := storage.Migrate(e.ctx, url); err != nil {
		return err
	}
	db, err := storage.Open(e.ctx, url)
	if err != nil {
		return err
	}
	e.close = append(e.close, db.Close)
	e.db = db
	return nil
}

func (e *env) nats() (*config.NATS, error) {
	n, err := e.cfg.ConnectNATS(e.ctx, "seatctl", false, e.log)
	if err != nil {
		return nil, err
	}
	e.close = append(e.close, n.Close)
	return n, nil
}

func (e *env) print(v any) error {
	enc := json.NewEncoder(e.stdout)
	return enc.Encode(v)
}

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		_, _ = fmt.Fprintln(stderr, usage) // like flag's own usage output: best effort
		if len(args) == 0 {
			return exitError{2}
		}
		return nil
	}
	e := &env{ctx: ctx, cfg: config.Defaults(), stdin: stdin, stdout: stdout, stderr: stderr}
	e.cfg.LogLevel = "warn"
	defer func() {
		for i := len(e.close) - 1; i >= 0; i-- {
			e.close[i]()
		}
	}()
	cmd := args[0]
	rest := args[1:]
	if cmd != "import" && cmd != "dlq" && len(rest) > 0 && !strings.HasPrefix(rest[0], "-") {
		cmd += " " + rest[0]
		rest = rest[1:]
	}
	fs := flag.NewFlagSet("seatctl "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	if err := e.cfg.RegisterClient(fs); err != nil {
		return err
	}
	e.log = e.cfg.Logger()
	fs.Usage = func() { commandUsage(fs.Output(), cmd, fs) }
	handler, ok := commands[cmd]
	if !ok {
		_, _ = fmt.Fprintln(stderr, usage)
		return fmt.Errorf("unknown command %q", cmd)
	}
	if err := handler(e, fs, rest); !errors.Is(err, flag.ErrHelp) {
		return err
	}
	return nil
}

type command func(e *env, fs *flag.FlagSet, args []string) error

// examples show each command at work, under its -h.
var examples = map[string]string{
	"org create":             `seatctl org create --name "Acme"`,
	"org update":             `seatctl org update $ORG --seat-pricing=false`,
	"customer create":        `seatctl customer create --org $ORG --email buyer@acme.test`,
	"member create":          `seatctl member create --customer $CUST --email ops@acme.test --role billing_manager`,
	"product create":         `seatctl product create --org $ORG --name "Pro" --interval month`,
	"product list":           `seatctl product list --org $ORG`,
	"subscription create":    `seatctl subscription create --customer $CUST --seats 10 --product $PRODUCT --amount 4900`,
	"subscription set-seats": `seatctl subscription set-seats $SUB 25`,
	"order create":           `seatctl order create --customer $CUST --seats 5 --product "Lifetime" --status paid`,
	"checkout create":        `seatctl checkout create --subscription $SUB`,
	"session create":         `seatctl session create --customer $CUST --ttl 1h`,
	"token create":           `seatctl token create --org $ORG --scope customer_seats:read --scope customer_seats:write --expires-in 90d --comment "billing backend"`,
	"seat show":              `seatctl seat show $SEAT`,
	"dlq":                    `seatctl dlq list`,
}

// commandUsage prints a command's line of the overview, an example and its
// own flags. Like flag.PrintDefaults, it ignores write errors: usage goes
// to a terminal, and there is nothing to do if it cannot be shown.
func commandUsage(w io.Writer, cmd string, fs *flag.FlagSet) {
	for _, line := range strings.Split(usage, "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), cmd+" ") || strings.TrimSpace(line) == cmd {
			_, _ = fmt.Fprintln(w, "usage: seatctl "+strings.TrimSpace(line))
		}
	}
	if ex, ok := examples[cmd]; ok {
		_, _ = fmt.Fprintln(w, "\nexample:\n  "+ex+"\n\nflags:")
	}
	fs.PrintDefaults()
}

var commands = map[string]command{
	"org create":             orgCreate,
	"org update":             orgUpdate,
	"customer create":        customerCreate,
	"member create":          memberCreate,
	"product create":         productCreate,
	"product list":           productList,
	"subscription create":    poolCreate("subscription"),
	"subscription set-seats": subscriptionSetSeats,
	"order create":           poolCreate("order"),
	"checkout create":        checkoutCreate,
	"session create":         sessionCreate,
	"token create":           tokenCreate,
	"token list":             tokenList,
	"token revoke":           tokenRevoke,
	"seat show":              seatShow,
	"import":                 importCmd,
	"dlq":                    deadLetterCmd,
	"status":                 statusCmd,
	"webhook create":         webhookCreate,
	"webhook list":           webhookList,
	"webhook delete":         webhookDelete,
	"webhook rotate-secret":  webhookRotate,
	"webhook enable":         webhookEnable,
	"webhook deliveries":     webhookDeliveries,
	"webhook redeliver":      webhookRedeliver,
	"bench":                  benchCmd,
}

// parse parses flags, allowing them after positional arguments too.
func parse(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

func required(name, v string) error {
	if strings.TrimSpace(v) == "" {
		return fmt.Errorf("--%s is required", name)
	}
	return nil
}

func orgCreate(e *env, fs *flag.FlagSet, args []string) error {
	name := fs.String("name", "", "organization name")
	pricing := fs.Bool("seat-pricing", true, "seat-based pricing enabled")
	members := fs.Bool("member-model", false, "member model: seats belong to the purchaser, occupants are members")
	returnURL := fs.String("claim-return-url", "", "where invitees go after claiming a seat (https; http only on localhost)")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	if err := required("name", *name); err != nil {
		return err
	}
	// Checked before anything is created, so a bad URL leaves no half-made
	// organization behind.
	if err := storage.CheckReturnURL(*returnURL); err != nil {
		return describe(err)
	}
	if err := e.open(); err != nil {
		return err
	}
	id, err := e.db.CreateOrganization(e.ctx, *name, *pricing, *members)
	if err != nil {
		return describe(err)
	}
	if *returnURL != "" {
		if err := e.db.SetClaimReturnURL(e.ctx, id, *returnURL); err != nil {
			return describe(err)
		}
	}
	return e.print(map[string]string{"id": id})
}

// orgUpdate changes an organization's settings: its claim return URL and
// whether it has seat-based pricing. Only the flags given change anything.
func orgUpdate(e *env, fs *flag.FlagSet, args []string) error {
	var returnURL *string
	var pricing *bool
	fs.Func("claim-return-url", "where invitees go after claiming a seat (https; http only on localhost; \"\" clears it)", func(v string) error {
		returnURL = &v
		return nil
	})
	// The same flag as org create's; a bool flag, so it takes
	// --seat-pricing=false (not "--seat-pricing false").
	fs.BoolFunc("seat-pricing", "seat-based pricing enabled (=true or =false; off, the organization's seats refuse with 403 FeatureNotEnabled)", func(v string) error {
		on, err := strconv.ParseBool(v)
		if err != nil {
			return fmt.Errorf("want true or false, not %q", v)
		}
		pricing = &on
		return nil
	})
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return errors.New("usage: seatctl org update ORG [--claim-return-url URL] [--seat-pricing=true|false]")
	}
	if returnURL == nil && pricing == nil {
		return errors.New("nothing to update: give --claim-return-url URL or --seat-pricing=true|false")
	}
	// Checked before anything is written, so a bad URL changes nothing.
	if returnURL != nil {
		if err := storage.CheckReturnURL(*returnURL); err != nil {
			return describe(err)
		}
	}
	if err := e.open(); err != nil {
		return err
	}
	out := map[string]any{"id": pos[0]}
	if pricing != nil {
		if err := e.db.SetSeatPricing(e.ctx, pos[0], *pricing); err != nil {
			return describe(err)
		}
		out["seat_based_pricing"] = *pricing
	}
	if returnURL != nil {
		if err := e.db.SetClaimReturnURL(e.ctx, pos[0], *returnURL); err != nil {
			return describe(err)
		}
		out["claim_return_url"] = *returnURL
	}
	return e.print(out)
}

func customerCreate(e *env, fs *flag.FlagSet, args []string) error {
	org := fs.String("org", "", "organization id")
	email := fs.String("email", "", "customer email")
	ext := fs.String("external-id", "", "external customer id")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	if err := errors.Join(required("org", *org), required("email", *email)); err != nil {
		return err
	}
	if err := e.open(); err != nil {
		return err
	}
	id, err := e.db.CreateCustomer(e.ctx, *org, *email, *ext)
	if err != nil {
		return describe(err)
	}
	return e.print(map[string]string{"id": id})
}

func memberCreate(e *env, fs *flag.FlagSet, args []string) error {
	cust := fs.String("customer", "", "customer id")
	email := fs.String("email", "", "member email")
	role := fs.String("role", "member", "owner, billing_manager or member")
	name := fs.String("name", "", "member name")
	ext := fs.String("external-id", "", "the member's id in your system (unique within the customer)")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	if err := errors.Join(required("customer", *cust), required("email", *email)); err != nil {
		return err
	}
	if err := e.open(); err != nil {
		return err
	}
	id, err := e.db.CreateMember(e.ctx, storage.MemberSpec{CustomerID: *cust, Email: *email, Role: *role, Name: *name, ExternalID: *ext})
	if err != nil {
		return describe(err)
	}
	return e.print(map[string]string{"id": id})
}

func productCreate(e *env, fs *flag.FlagSet, args []string) error {
	org := fs.String("org", "", "organization id")
	name := fs.String("name", "", "product name (not an id: --product takes either)")
	desc := fs.String("description", "", "product description")
	interval := fs.String("interval", "month", "how often a subscription of it renews: day, week, month, year, or none for a one-time product")
	count := fs.Int("interval-count", 0, "renews every N intervals (default 1)")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	if err := errors.Join(required("org", *org), required("name", *name)); err != nil {
		return err
	}
	if *interval == "none" {
		*interval = ""
	}
	if err := e.open(); err != nil {
		return err
	}
	p, err := e.db.CreateProduct(e.ctx, storage.ProductSpec{OrganizationID: *org, Name: *name, Description: *desc,
		RecurringInterval: *interval, RecurringIntervalCount: *count})
	if err != nil {
		return describe(err)
	}
	return e.print(p)
}

func productList(e *env, fs *flag.FlagSet, args []string) error {
	org := fs.String("org", "", "organization id")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	if err := required("org", *org); err != nil {
		return err
	}
	if err := e.open(); err != nil {
		return err
	}
	list, err := e.db.Products(e.ctx, *org)
	if err != nil {
		return describe(err)
	}
	return e.print(map[string]any{"products": list})
}

func poolCreate(kind string) command {
	return func(e *env, fs *flag.FlagSet, args []string) error {
		cust := fs.String("customer", "", "customer id (the purchaser)")
		seats := fs.Int("seats", -1, "number of seats")
		product := fs.String("product", "", "the product: its id, or the name of exactly one product of the customer's organization")
		status := fs.String("status", "", map[string]string{"subscription": "active or canceled", "order": "paid or pending"}[kind])
		spec := storage.PoolSpec{Kind: kind}
		if kind == "subscription" {
			fs.IntVar(&spec.Amount, "amount", 0, "what the subscription costs per period, in the currency's smallest unit (cents)")
			fs.StringVar(&spec.Currency, "currency", "usd", "three-letter currency code")
			fs.Func("started-at", "when the subscription started (RFC 3339; default now): its billing periods count from it", func(v string) error {
				t, err := time.Parse(time.RFC3339, v)
				spec.StartedAt = t
				return err
			})
		}
		if _, err := parse(fs, args); err != nil {
			return err
		}
		if err := errors.Join(required("customer", *cust), required("product", *product)); err != nil {
			return err
		}
		if *seats < 0 {
			return errors.New("--seats N is required (N >= 0)")
		}
		if err := e.open(); err != nil {
			return err
		}
		prod, err := e.db.FindProduct(e.ctx, *cust, *product)
		if err != nil {
			return describe(err)
		}
		spec.CustomerID, spec.ProductID, spec.Seats, spec.Status = *cust, prod, *seats, *status
		id, err := e.db.CreatePool(e.ctx, spec)
		if err != nil {
			return describe(err)
		}
		return e.print(map[string]string{"id": id, "product_id": prod})
	}
}

func subscriptionSetSeats(e *env, fs *flag.FlagSet, args []string) error {
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 2 {
		return errors.New("usage: seatctl subscription set-seats SUB N")
	}
	var n int
	if _, err := fmt.Sscan(pos[1], &n); err != nil {
		return fmt.Errorf("seat count %q is not a number", pos[1])
	}
	if err := e.open(); err != nil {
		return err
	}
	if err := e.db.SetSubscriptionSeats(e.ctx, pos[0], n); err != nil {
		return describe(err)
	}
	return e.print(map[string]any{"id": pos[0], "seats": n})
}

func checkoutCreate(e *env, fs *flag.FlagSet, args []string) error {
	sub := fs.String("subscription", "", "subscription id")
	ord := fs.String("order", "", "order id")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	if (*sub == "") == (*ord == "") {
		return errors.New("give exactly one of --subscription or --order")
	}
	if err := e.open(); err != nil {
		return err
	}
	id, err := e.db.CreateCheckout(e.ctx, *sub, *ord)
	if err != nil {
		return describe(err)
	}
	return e.print(map[string]string{"id": id})
}

type multi []string

func (m *multi) String() string     { return strings.Join(*m, ",") }
func (m *multi) Set(v string) error { *m = append(*m, v); return nil }

// scopeFlag is a repeatable --scope that takes only the scopes seatd knows,
// so a typo cannot mint a session that silently authorises nothing.
type scopeFlag struct{ multi }

func (m *scopeFlag) Set(v string) error {
	if v != storage.ScopeRead && v != storage.ScopeWrite {
		return fmt.Errorf("unknown scope %q: scopes are %s and %s", v, storage.ScopeRead, storage.ScopeWrite)
	}
	return m.multi.Set(v)
}

func sessionCreate(e *env, fs *flag.FlagSet, args []string) error {
	cust := fs.String("customer", "", "customer id (customer session)")
	mem := fs.String("member", "", "member id (member session)")
	ttl := fs.Duration("ttl", time.Hour, "session lifetime")
	var scopes scopeFlag
	fs.Var(&scopes, "scope", "scope (repeatable; default customer_portal:read and customer_portal:write)")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	if (*cust == "") == (*mem == "") {
		return errors.New("give exactly one of --customer or --member")
	}
	if err := e.open(); err != nil {
		return err
	}
	token, expires, err := e.db.CreateSession(e.ctx, *cust, *mem, scopes.multi, *ttl)
	if err != nil {
		return describe(err)
	}
	return e.print(map[string]any{"token": token, "expires_at": expires})
}

// describe turns a coded error into a plain message for the terminal.
func describe(err error) error {
	var ce *events.Error
	if errors.As(err, &ce) {
		return errors.New(ce.Detail)
	}
	return err
}
