package mailer

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/seatd/seatd/events"
	"github.com/seatd/seatd/events/stream"
	"github.com/seatd/seatd/mailer/mailtest"
	"github.com/seatd/seatd/storage"
	"github.com/seatd/seatd/storage/secret"
	"github.com/seatd/seatd/storage/storagetest"
)

const testPublicURL = "https://seats.example.test"

var testSecret = []byte("mailer-test-secret-0123456789abcdef")

// bundle is what an end-to-end mailer test works with: a fresh database, a
// JetStream server with seatd's streams, a test SMTP server and the keys.
type bundle struct {
	dbURL string
	db    *storage.DB
	ns    *server.Server
	nc    *nats.Conn
	js    jetstream.JetStream
	smtp  *mailtest.Server
	keys  secret.Keys
}

type setupOpts struct {
	dbURL string          // default: storagetest.NewDatabase
	smtp  mailtest.Config // the test SMTP server's configuration
}

func setup(t *testing.T, opts setupOpts) *bundle {
	t.Helper()
	ctx := t.Context()
	b := &bundle{dbURL: opts.dbURL}
	if b.dbURL == "" {
		b.dbURL = storagetest.NewDatabase(t)
	}
	db, err := storage.Open(ctx, b.dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	b.db = db

	ns, err := stream.StartServer(stream.ServerConfig{Port: -1, StoreDir: t.TempDir(), Fsync: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ns.Shutdown)
	b.ns = ns
	nc, err := stream.Connect(ns.ClientURL(), "mailer-test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	b.nc = nc
	if b.js, err = jetstream.New(nc); err != nil {
		t.Fatal(err)
	}
	if err := stream.SetupStreams(ctx, b.js, stream.StreamConfig{}); err != nil {
		t.Fatal(err)
	}
	b.smtp = mailtest.Start(t, opts.smtp)
	if b.keys, err = secret.NewKeys(testSecret); err != nil {
		t.Fatal(err)
	}
	return b
}

// setAckWait shortens the mail consumer's AckWait so redeliveries after a
// crash happen within a test's patience.
func (b *bundle) setAckWait(t *testing.T, d time.Duration) {
	t.Helper()
	_, err := b.js.CreateOrUpdateConsumer(t.Context(), events.MailStream, jetstream.ConsumerConfig{
		Durable: events.MailerConsumer, AckPolicy: jetstream.AckExplicitPolicy,
		AckWait: d, MaxDeliver: -1, MaxAckPending: 1000,
	})
	if err != nil {
		t.Fatal(err)
	}
}

// sender is an SMTP sender for the bundle's test server.
func (b *bundle) sender(t *testing.T, query string) *SMTPSender {
	t.Helper()
	cfg, err := ParseSMTPURL(b.smtp.URL() + query)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(query, "timeout=") {
		cfg.Timeout = 5 * time.Second
	}
	s, err := NewSMTPSender(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// config is a Mailer configuration with test timings.
func (b *bundle) config(t *testing.T) Config {
	return Config{
		DB: b.db, JS: b.js, Sender: b.sender(t, ""), Keys: b.keys, PublicURL: testPublicURL,
		From: "Seats <no-reply@example.test>", Log: testLogger(t),
		RetryBase: 50 * time.Millisecond, RetryMax: time.Second, FetchWait: time.Second,
	}
}

// run starts a Mailer and returns a function that stops it and waits for
// Run to return; the test's cleanup stops it too.
func (b *bundle) run(t *testing.T, cfg Config) (stop func()) {
	t.Helper()
	return runMailer(t, New(cfg))
}

func runMailer(t *testing.T, m *Mailer) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("Run did not return within 10s of cancel")
		}
	}
	t.Cleanup(stop)
	return stop
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// seed describes the invitation to create.
type seed struct {
	orgName   string
	product   string
	order     bool    // the pool is a one-time order, not a subscription
	seatEmail string  // "" invites an existing customer by id
	custEmail string  // the invited customer's email when seatEmail is ""
	inviter   *string // the buyer's email, who invites; nil: a generated one
	expiresIn time.Duration
}

// invitation is a seeded invitation.
type invitation struct {
	id, seatID, poolID string
	owner              string // the pool's buyer, who assigned the seat
	nonce              []byte
	token              string
	to                 string
}

func ptr(s string) *string { return &s }

// seedInvitation provisions an organization, its buyer and a pool, and
// assigns a pending seat through the seat transaction the worker runs, so
// the mailer reads exactly the rows production writes.
func (b *bundle) seedInvitation(t *testing.T, s seed) invitation {
	t.Helper()
	ctx := t.Context()
	if s.orgName == "" {
		s.orgName = "Acme Inc"
	}
	if s.product == "" {
		s.product = "Acme Pro"
	}
	must := func(id string, err error) string {
		t.Helper()
		if err != nil {
			t.Fatalf("seed: %v", err)
		}
		return id
	}
	orgID := must(b.db.CreateOrganization(ctx, s.orgName, true, false))
	buyerEmail := "buyer-" + uuid.NewString()[:8] + "@example.test"
	if s.inviter != nil {
		buyerEmail = *s.inviter
	}
	inv := invitation{owner: must(b.db.CreateCustomer(ctx, orgID, buyerEmail, ""))}
	kind, status := "subscription", "active"
	if s.order {
		kind, status = "order", "paid"
	}
	inv.poolID = storagetest.Pool(t, b.db, kind, inv.owner, s.product, 10, status)
	a := events.SeatAssign{SubscriptionID: inv.poolID}
	if s.order {
		a = events.SeatAssign{OrderID: inv.poolID}
	}
	if s.seatEmail != "" {
		a.Email, inv.to = s.seatEmail, s.seatEmail
	} else {
		if s.custEmail == "" {
			s.custEmail = "member-" + uuid.NewString()[:8] + "@example.test"
		}
		a.CustomerID, inv.to = must(b.db.CreateCustomer(ctx, orgID, s.custEmail, "")), s.custEmail
	}
	ttl := s.expiresIn
	if ttl < 0 {
		ttl = time.Hour
	}
	res := b.apply(t, events.Request{Op: events.OpAssign, CustomerID: inv.owner, Assign: &a}, ttl)
	inv.seatID = res.Seat.ID
	if s.expiresIn < 0 {
		// Let time pass: the invitation is now past its expiry.
		if _, err := b.db.Pool.Exec(ctx, `UPDATE invitations SET expires_at = now() + $2::interval WHERE seat_id = $1`,
			inv.seatID, s.expiresIn.String()); err != nil {
			t.Fatal(err)
		}
		if _, err := b.db.Pool.Exec(ctx, `UPDATE seats SET invitation_token_expires_at = now() + $2::interval WHERE id = $1`,
			inv.seatID, s.expiresIn.String()); err != nil {
			t.Fatal(err)
		}
	}
	b.loadInvitation(t, &inv)
	return inv
}

// apply runs one request through the worker's seat transaction.
func (b *bundle) apply(t *testing.T, r events.Request, ttl time.Duration) events.Result {
	t.Helper()
	r.ID, r.SubmittedAt = uuid.NewString(), time.Now().UTC()
	res, err := b.db.Apply(t.Context(), storage.Settings{Keys: b.keys, InvitationTTL: ttl}, []events.Request{r})
	if err != nil {
		t.Fatalf("%s: %v", r.Op, err)
	}
	if !res[0].OK() {
		t.Fatalf("%s: %s: %s", r.Op, res[0].Code, res[0].Detail)
	}
	return res[0]
}

// loadInvitation reads the seat's current invitation and derives its
// token, as the mailer does.
func (b *bundle) loadInvitation(t *testing.T, inv *invitation) {
	t.Helper()
	if err := b.db.Pool.QueryRow(t.Context(), `SELECT i.id, i.nonce FROM seats s JOIN invitations i ON i.id = s.invitation_id
		WHERE s.id = $1`, inv.seatID).Scan(&inv.id, &inv.nonce); err != nil {
		t.Fatalf("seat %s has no invitation: %v", inv.seatID, err)
	}
	inv.token = b.keys.InvitationToken(inv.nonce)
}

// resend supersedes the seat's invitation with a new one, through the
// worker's resend.
func (b *bundle) resend(t *testing.T, old invitation) invitation {
	t.Helper()
	inv := old
	b.apply(t, events.Request{Op: events.OpResend, CustomerID: inv.owner, SeatID: inv.seatID}, 24*time.Hour)
	b.loadInvitation(t, &inv)
	return inv
}

// revoke revokes the seat through the worker's revoke.
func (b *bundle) revoke(t *testing.T, inv invitation) {
	t.Helper()
	b.apply(t, events.Request{Op: events.OpRevoke, CustomerID: inv.owner, SeatID: inv.seatID}, 24*time.Hour)
}

// publish sends the mail request for inv, as the outbox relay does.
func (b *bundle) publish(t *testing.T, inv invitation) {
	t.Helper()
	b.publishAs(t, inv, "mail-"+inv.id)
}

func (b *bundle) publishAs(t *testing.T, inv invitation, msgID string) {
	t.Helper()
	data, err := json.Marshal(events.MailRequest{InvitationID: inv.id, SeatID: inv.seatID})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.js.Publish(t.Context(), events.MailSubject, data, jetstream.WithMsgID(msgID)); err != nil {
		t.Fatal(err)
	}
}

// ledgerRow is an invitation's row in the delivery ledger.
type ledgerRow struct {
	state     storage.DeliveryState
	attempts  int
	lastError string
	sent      bool
}

func (b *bundle) ledger(t *testing.T, invitationID string) ledgerRow {
	t.Helper()
	var (
		r         ledgerRow
		state     string
		lastError *string
		sentAt    *time.Time
	)
	if err := b.db.Pool.QueryRow(context.Background(), `SELECT delivery_state, attempts, last_error, sent_at
		FROM invitations WHERE id = $1`, invitationID).Scan(&state, &r.attempts, &lastError, &sentAt); err != nil {
		t.Fatal(err)
	}
	r.state, r.sent = storage.DeliveryState(state), sentAt != nil
	if lastError != nil {
		r.lastError = *lastError
	}
	return r
}

// waitState waits until the invitation's delivery state is want.
func (b *bundle) waitState(t *testing.T, invitationID string, want storage.DeliveryState, timeout time.Duration) ledgerRow {
	t.Helper()
	var r ledgerRow
	storagetest.Eventually(t, timeout, "delivery state "+string(want), func() error {
		r = b.ledger(t, invitationID)
		if r.state != want {
			return fmt.Errorf("invitation %s is %s (attempts %d, last error %q), want %s", invitationID, r.state, r.attempts, r.lastError, want)
		}
		return nil
	})
	return r
}

// waitSettled waits until the mail consumer has no message pending or
// unacknowledged: every request was acknowledged or terminated.
func (b *bundle) waitSettled(t *testing.T, timeout time.Duration) {
	t.Helper()
	storagetest.Eventually(t, timeout, "the mail consumer to settle", func() error {
		cons, err := b.js.Consumer(t.Context(), events.MailStream, events.MailerConsumer)
		if err != nil {
			return err
		}
		info := cons.CachedInfo()
		if info.NumPending != 0 || info.NumAckPending != 0 {
			return fmt.Errorf("consumer: %d pending, %d awaiting ack", info.NumPending, info.NumAckPending)
		}
		return nil
	})
}

// stays asserts that f keeps returning nil for d: the check for things
// that must not happen (a retry loop, a second send).
func stays(t testing.TB, d time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if err := f(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// claimLink finds the claim link in a body.
func claimLink(t *testing.T, body string) string {
	t.Helper()
	i := strings.Index(body, testPublicURL+"/claim?token=")
	if i < 0 {
		t.Fatalf("no claim link in:\n%s", body)
	}
	end := strings.IndexAny(body[i:], "\" \r\n<")
	if end < 0 {
		end = len(body) - i
	}
	return body[i : i+end]
}
