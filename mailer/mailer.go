package mailer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/seatd/seatd/events"
	"github.com/seatd/seatd/events/stream"
	"github.com/seatd/seatd/mailer/invite"
	"github.com/seatd/seatd/storage"
	"github.com/seatd/seatd/storage/secret"
	"github.com/seatd/seatd/telemetry"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
)

// Config is what a Mailer needs. DB, JS, Sender, Keys and PublicURL are
// required.
type Config struct {
	DB     *storage.DB
	JS     jetstream.JetStream
	Sender Sender
	// Keys must hold the same secret as the worker's: the mailer derives
	// each invitation's token from its nonce, and refuses to send a link
	// whose hash does not match the seat's.
	Keys secret.Keys
	// PublicURL is the base of claim links (SEATD_PUBLIC_URL).
	PublicURL string
	// From is the sender (SEATD_MAIL_FROM); empty means DefaultFrom(PublicURL).
	From string
	// Templates word and style the email (SEATD_TEMPLATES); nil means the
	// embedded ones.
	Templates *invite.Templates
	Log       *slog.Logger

	// Concurrency is the number of batches one Mailer delivers at once;
	// default 4, so that one batch's round trips overlap another's
	// sending. Each holds one database connection from start to end, so
	// keep it below the pool's size.
	Concurrency int
	// BatchSize is the most mail requests delivered together; default
	// 256. A batch's invitations are locked, loaded and marked with a
	// fixed handful of statements, handed to the Sender together, and
	// their outcomes recorded with one statement per state; a batch is
	// that large only when a backlog waits.
	BatchSize int
	// RetryBase is the delay before the first retry of a temporary
	// failure; it doubles with every delivery of the message up to
	// RetryMax. Defaults 2s and 5m.
	RetryBase time.Duration
	RetryMax  time.Duration
	// MaxAttempts is the number of SMTP attempts after which a temporary
	// failure is recorded as permanent; default 20.
	MaxAttempts int
	// FetchWait bounds one pull request; default 5s. Run notices a
	// cancelled context at once regardless.
	FetchWait time.Duration
}

// recordTimeout bounds how long a Mailer keeps retrying to record an
// outcome in a database that is briefly unavailable.
const recordTimeout = 30 * time.Second

// Mailer consumes invitation mail requests and delivers them.
type Mailer struct {
	cfg      Config
	log      *slog.Logger
	composer Composer

	// testHookAfterSend, if set, runs for every message the Sender
	// reports, before its outcome is recorded. The crash tests use it to
	// die in that window.
	testHookAfterSend func(*Message, error)
	// testHookBatch, if set, runs with the invitation ids of every batch
	// before they are loaded.
	testHookBatch func(invitationIDs []string)
}

// New returns a Mailer for cfg. Run checks the configuration.
func New(cfg Config) *Mailer {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 4
	}
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = 256
	}
	if cfg.RetryBase <= 0 {
		cfg.RetryBase = 2 * time.Second
	}
	if cfg.RetryMax <= 0 {
		cfg.RetryMax = 5 * time.Minute
	}
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = 20
	}
	if cfg.FetchWait <= 0 {
		cfg.FetchWait = 5 * time.Second
	}
	return &Mailer{
		cfg:      cfg,
		log:      cfg.Log.With("role", "mailer"),
		composer: Composer{PublicURL: cfg.PublicURL, From: cfg.From, Templates: cfg.Templates},
	}
}

func (m *Mailer) check() error {
	switch {
	case m.cfg.DB == nil:
		return errors.New("mailer: no database")
	case m.cfg.JS == nil:
		return errors.New("mailer: no JetStream")
	case m.cfg.Sender == nil:
		return errors.New("mailer: no sender")
	case m.cfg.Keys.IsZero():
		return errors.New("mailer: no secret key")
	}
	if _, err := ClaimURL(m.cfg.PublicURL, "x"); err != nil {
		return fmt.Errorf("mailer: %w", err)
	}
	// A sender address go-mail rejects would fail every invitation.
	msg, err := m.composer.Compose(Invitation{ID: "check", To: "check@example.com", Token: "x"}, time.Now())
	if err == nil {
		_, err = msg.build()
	}
	if err != nil {
		return fmt.Errorf("mailer: %w", err)
	}
	return nil
}

// Run delivers invitations until ctx is cancelled, then finishes the
// batches in hand and returns nil. Several Mailers may run on the same
// durable consumer, in one process or many.
//
// A message is acknowledged only after its outcome is recorded, so a
// Mailer killed at any moment loses nothing: JetStream redelivers the
// message after the consumer's AckWait. While a batch is in progress the
// Mailer tells JetStream so (InProgress) every AckWait/3, so a slow SMTP
// server does not cause a redelivery to another replica.
func (m *Mailer) Run(ctx context.Context) error {
	if err := m.check(); err != nil {
		return err
	}
	cons, err := m.consumer(ctx)
	if err != nil || cons == nil {
		return err
	}
	ackWait := cons.CachedInfo().Config.AckWait
	m.log.Info("mailer started", "concurrency", m.cfg.Concurrency, "batch", m.cfg.BatchSize, "ack_wait", ackWait)

	var wg sync.WaitGroup
	defer wg.Wait()
	slots := make(chan struct{}, m.cfg.Concurrency)
	for {
		// A batch is fetched only when there is a slot for it, so messages
		// this Mailer cannot start on stay with JetStream, for any replica.
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return nil
		}
		msgs, err := m.fetch(ctx, cons)
		if ctx.Err() != nil {
			// Stopping: hand them to another replica now rather than
			// after AckWait.
			for _, msg := range msgs {
				_ = msg.Nak()
			}
			return nil
		}
		if err != nil || len(msgs) == 0 {
			<-slots
			if err != nil {
				m.log.Warn("fetch failed; retrying", "error", err)
				sleep(ctx, time.Second)
			}
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-slots }()
			m.deliverBatch(ctx, msgs, ackWait)
		}()
	}
}

// fetch waits up to FetchWait for a message and returns it with whatever
// else the consumer has ready, up to BatchSize: a backlog goes in full
// batches, a lone message at once. Neither pull request outlives the call,
// so nothing is fetched that this Mailer cannot start on at once.
func (m *Mailer) fetch(ctx context.Context, cons jetstream.Consumer) ([]jetstream.Msg, error) {
	fctx, cancel := context.WithTimeout(ctx, m.cfg.FetchWait)
	defer cancel()
	first, err := cons.Fetch(1, jetstream.FetchContext(fctx))
	if err != nil {
		return nil, err
	}
	var msgs []jetstream.Msg
	for msg := range first.Messages() {
		msgs = append(msgs, msg)
	}
	if len(msgs) == 0 || m.cfg.BatchSize == 1 {
		return msgs, nil
	}
	rest, err := cons.FetchNoWait(m.cfg.BatchSize - 1)
	if err != nil {
		return msgs, nil // the first is in hand; the rest can wait for the next batch
	}
	for msg := range rest.Messages() {
		msgs = append(msgs, msg)
	}
	return msgs, nil
}

// consumer looks up the durable consumer, waiting for NATS if needed.
func (m *Mailer) consumer(ctx context.Context) (jetstream.Consumer, error) {
	for {
		cons, err := m.cfg.JS.Consumer(ctx, events.MailStream, events.MailerConsumer)
		if err == nil {
			return cons, nil
		}
		if errors.Is(err, jetstream.ErrConsumerNotFound) || errors.Is(err, jetstream.ErrStreamNotFound) {
			return nil, fmt.Errorf("mailer: %w (run stream.SetupStreams first)", err)
		}
		if ctx.Err() != nil {
			return nil, nil
		}
		m.log.Warn("waiting for JetStream", "error", err)
		sleep(ctx, time.Second)
	}
}

type action int

const (
	nak action = iota
	ack
	term
)

// delivery is one mail request of a batch and what becomes of it.
type delivery struct {
	msg       jetstream.Msg
	req       events.MailRequest
	delivered uint64
	span      trace.Span // nil for an undecodable request
	log       *slog.Logger

	email   *Message
	attempt int   // this SMTP attempt's number
	sendErr error // the Sender's outcome

	// How to settle the message. Until decided, a delivery is retried.
	act   action
	delay time.Duration
}

func (d *delivery) settle(act action, delay time.Duration) { d.act, d.delay = act, delay }

// deliverBatch delivers a batch of messages and settles each one. It runs
// to completion even when Run's context is cancelled: stopping drains, it
// does not abandon.
func (m *Mailer) deliverBatch(runCtx context.Context, msgs []jetstream.Msg, ackWait time.Duration) {
	ctx := context.WithoutCancel(runCtx)
	stop := keepAlive(msgs, ackWait)
	ds := make([]*delivery, len(msgs))
	for i, msg := range msgs {
		ds[i] = m.decode(ctx, msg)
	}
	m.deliver(ctx, ds)
	stop()
	for _, d := range ds {
		m.settleMsg(d)
	}
}

// decode reads a mail request; one that names no invitation is dropped.
func (m *Mailer) decode(ctx context.Context, msg jetstream.Msg) *delivery {
	d := &delivery{msg: msg, delivered: 1, log: m.log}
	if md, err := msg.Metadata(); err == nil {
		d.delivered = md.NumDelivered
	}
	d.settle(nak, m.backoff(d.delivered))
	if err := json.Unmarshal(msg.Data(), &d.req); err != nil {
		m.log.Error("undecodable mail request; dropping it", "error", err)
		d.settle(term, 0)
		return d
	}
	if !events.IsUUID(d.req.InvitationID) {
		m.log.Error("mail request without a valid invitation id; dropping it", "invitation_id", d.req.InvitationID)
		d.settle(term, 0)
		return d
	}
	_, d.span = telemetry.StartConsumer(telemetry.FromTraceMap(ctx, d.req.Trace), nil, "seatd.mailer invitation",
		attribute.String("seatd.request_id", d.req.RequestID), attribute.String("seatd.invitation_id", d.req.InvitationID))
	if d.delivered > 1 {
		telemetry.Redelivered(events.MailerConsumer)
	}
	d.log = m.log.With("request_id", d.req.RequestID, "invitation_id", d.req.InvitationID, "seat_id", d.req.SeatID, "delivery", d.delivered)
	return d
}

func (m *Mailer) settleMsg(d *delivery) {
	if d.span != nil {
		defer d.span.End()
	}
	var err error
	switch d.act {
	case ack:
		// Not DoubleAck: every acknowledged request has its final state
		// in the ledger, so an acknowledgement that goes missing only
		// brings a redelivery that is acknowledged unsent, and waiting for
		// JetStream to confirm each one would hold up the next batch.
		err = d.msg.Ack()
	case nak:
		err = d.msg.NakWithDelay(d.delay)
	case term:
		err = d.msg.Term()
	}
	if err != nil {
		// Harmless: the message comes back and the ledger says what
		// happened to it.
		d.log.Warn("could not settle mail request; it will be redelivered", "error", err)
	}
}

// deliver runs one delivery attempt for each decoded request of a batch
// and decides how to settle it.
func (m *Mailer) deliver(ctx context.Context, ds []*delivery) {
	byID := map[string]*delivery{}
	var ids []string
	for _, d := range ds {
		if d.act == term {
			continue // undecodable
		}
		if byID[d.req.InvitationID] != nil {
			// Locks are per session, so the batch would get this one
			// twice: it waits as it would for another mailer.
			d.log.Info("invitation is being delivered by another request of this batch; checking again later")
			d.settle(nak, m.cfg.RetryBase)
			continue
		}
		byID[d.req.InvitationID] = d
		ids = append(ids, d.req.InvitationID)
	}
	if len(ids) == 0 {
		return
	}
	if m.testHookBatch != nil {
		m.testHookBatch(ids)
	}
	b, err := m.cfg.DB.StartDeliveries(ctx, ids)
	if err != nil {
		for _, d := range byID {
			d.log.Warn("cannot load invitation; will retry", "error", err, "retry_in", d.delay)
		}
		return
	}
	defer b.Close()
	for id, err := range b.Skipped {
		d := byID[id]
		switch {
		case errors.Is(err, storage.ErrNotDeliverable):
			d.log.Info("invitation not sent", "reason", err.Error())
			d.settle(ack, 0)
		case errors.Is(err, storage.ErrDeliveryBusy):
			d.log.Info("invitation is being delivered by another mailer; checking again later")
			d.settle(nak, m.cfg.RetryBase)
		default: // not found
			d.log.Error("mail request for an unknown invitation; dropping it")
			d.settle(term, 0)
		}
	}

	// failed holds the invitations that cannot be sent at all, and later
	// those the server refused for good.
	sending, failed := m.compose(b.Mail, byID)
	retry := map[string]string{}
	for _, d := range m.send(ctx, b, sending) {
		id := d.req.InvitationID
		switch err := d.sendErr; {
		case IsPermanent(err):
			failed[id] = err.Error()
		case d.attempt >= m.cfg.MaxAttempts:
			failed[id] = fmt.Sprintf("gave up after %d attempts: %v", d.attempt, err)
		default:
			retry[id] = err.Error()
		}
	}
	if len(failed)+len(retry) == 0 {
		return
	}
	err = m.record(ctx, func(ctx context.Context) error {
		return b.Record(ctx, storage.DeliveryOutcomes{Retry: retry, Failed: failed})
	})
	for id, reason := range failed {
		d := byID[id]
		if err != nil {
			d.log.Warn("cannot record failure; will retry", "reason", reason, "error", err, "retry_in", d.delay)
			continue
		}
		telemetry.Email(telemetry.EmailFailed)
		d.log.Warn("invitation delivery failed", "reason", reason)
		d.settle(ack, 0)
	}
	for id := range retry {
		d := byID[id]
		if err != nil {
			d.log.Warn("cannot record temporary failure", "error", err)
		}
		// Back off by SMTP attempts, not deliveries: redeliveries after a
		// crashed mailer say nothing about the server.
		d.settle(nak, m.backoff(uint64(d.attempt)))
		telemetry.Email(telemetry.EmailRetried)
		d.log.Warn("temporary delivery failure; will retry", "error", d.sendErr, "retry_in", d.delay)
	}
}

// compose checks each deliverable invitation against its request and
// writes its email. It returns the deliveries ready to send, and the
// invitations that can never be sent, with why; the rest are settled.
func (m *Mailer) compose(mail []storage.InvitationMail, byID map[string]*delivery) (sending []*delivery, failed map[string]string) {
	failed = map[string]string{}
	for _, inv := range mail {
		d := byID[inv.InvitationID]
		if d.req.SeatID != "" && d.req.SeatID != inv.SeatID {
			d.log.Error("mail request names another seat than its invitation's; dropping it", "invitation_seat_id", inv.SeatID)
			d.settle(term, 0)
			continue
		}
		token := m.cfg.Keys.InvitationToken(inv.Nonce)
		if !secret.SameHash(secret.HashToken(token), inv.TokenHash) {
			// The link would not work. The likely cause is a secret key
			// that differs from the worker's: wait for an operator (or
			// another replica) rather than send a broken link or give up.
			d.log.Error("the derived claim token does not match the seat's token hash; is the secret key the worker's? will retry", "retry_in", d.delay)
			continue
		}
		if inv.To == "" {
			failed[inv.InvitationID] = "the seat has no email address"
			continue
		}
		msg, err := m.composer.Compose(Invitation{
			ID: inv.InvitationID, To: inv.To, ProductName: inv.ProductName, Organization: inv.Organization,
			InviterEmail: inv.InviterEmail, Token: token, ExpiresAt: inv.ExpiresAt,
		}, time.Now())
		if err != nil {
			failed[inv.InvitationID] = err.Error()
			continue
		}
		d.email = msg
		sending = append(sending, d)
	}
	return sending, failed
}

// send marks the attempts of ds, hands their emails to the Sender
// together, records each one the server accepted as sent, and settles
// those. It returns the deliveries that failed, with their errors.
func (m *Mailer) send(ctx context.Context, b *storage.DeliveryBatch, ds []*delivery) (failed []*delivery) {
	if len(ds) == 0 {
		return nil
	}
	ids := make([]string, len(ds))
	for i, d := range ds {
		ids[i] = d.req.InvitationID
	}
	attempts, dead, err := b.MarkSending(ctx, ids)
	if err != nil {
		for _, d := range ds {
			d.log.Warn("cannot record attempt; will retry", "error", err, "retry_in", d.delay)
		}
		return nil
	}
	var attempting []*delivery
	for _, d := range ds {
		if err := dead[d.req.InvitationID]; err != nil {
			d.log.Info("invitation not sent", "reason", err.Error())
			d.settle(ack, 0)
			continue
		}
		if attempts[d.req.InvitationID] == 0 {
			d.log.Warn("invitation changed before sending; will retry", "retry_in", d.delay)
			continue
		}
		d.attempt = attempts[d.req.InvitationID]
		d.log = d.log.With("attempt", d.attempt, "to", d.email.To)
		attempting = append(attempting, d)
	}
	if len(attempting) == 0 {
		return nil
	}
	emails := make([]*Message, len(attempting))
	for i, d := range attempting {
		emails[i] = d.email
	}
	rec := m.recordSent(ctx, b)
	m.cfg.Sender.SendAll(ctx, emails, func(out []Outcome) {
		var accepted []string
		for _, o := range out {
			d := attempting[o.Index]
			d.sendErr = o.Err
			if m.testHookAfterSend != nil {
				m.testHookAfterSend(d.email, o.Err)
			}
			if o.Err == nil {
				accepted = append(accepted, d.req.InvitationID)
			}
		}
		rec.add(accepted)
	})
	unrecorded := rec.close()
	for _, d := range attempting {
		switch {
		case d.sendErr != nil:
			failed = append(failed, d)
		case unrecorded[d.req.InvitationID] != nil:
			// The ledger still says sending, so the redelivery sends it
			// again, with the same Message-ID. Better twice than never.
			d.log.Error("invitation sent but not recorded; it will be sent again", "error", unrecorded[d.req.InvitationID], "retry_in", d.delay)
		default:
			telemetry.Email(telemetry.EmailSent)
			d.log.Info("invitation sent", "message_id", d.email.MessageID)
			d.settle(ack, 0)
		}
	}
	return failed
}

// sentRecorder records the messages a server accepted as sent while the
// rest of their batch is still being handed over: whatever was accepted
// while the previous write was in flight goes in the next one. A crash
// between a server's acceptance and its record sends that email again;
// this keeps the window one write long, however long the batch takes.
type sentRecorder struct {
	m    *Mailer
	b    *storage.DeliveryBatch
	ctx  context.Context
	wake chan struct{} // holds a wake-up when there is something to do
	done chan struct{}

	mu      sync.Mutex
	pending []string
	closed  bool

	unrecorded map[string]error // read once done is closed
}

func (m *Mailer) recordSent(ctx context.Context, b *storage.DeliveryBatch) *sentRecorder {
	r := &sentRecorder{m: m, b: b, ctx: ctx, wake: make(chan struct{}, 1), done: make(chan struct{}), unrecorded: map[string]error{}}
	go r.run()
	return r
}

func (r *sentRecorder) run() {
	defer close(r.done)
	for range r.wake {
		r.mu.Lock()
		ids, closed := r.pending, r.closed
		r.pending = nil
		r.mu.Unlock()
		if len(ids) > 0 {
			err := r.m.record(r.ctx, func(ctx context.Context) error {
				return r.b.Record(ctx, storage.DeliveryOutcomes{Sent: ids})
			})
			for _, id := range ids {
				if err != nil {
					r.unrecorded[id] = err
				}
			}
		}
		if closed {
			return
		}
	}
}

func (r *sentRecorder) poke() {
	select {
	case r.wake <- struct{}{}:
	default: // a wake-up is already waiting
	}
}

func (r *sentRecorder) add(ids []string) {
	if len(ids) == 0 {
		return
	}
	r.mu.Lock()
	r.pending = append(r.pending, ids...)
	r.mu.Unlock()
	r.poke()
}

// close waits until every accepted message is written and returns those
// that could not be, with why.
func (r *sentRecorder) close() map[string]error {
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
	r.poke()
	<-r.done
	return r.unrecorded
}

// record runs a ledger write, retrying while the database is briefly
// unavailable: after an SMTP attempt, the outcome is worth waiting for.
func (m *Mailer) record(ctx context.Context, write func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, recordTimeout)
	defer cancel()
	wait := 100 * time.Millisecond
	for {
		err := write(ctx)
		if err == nil || !storage.IsTransient(err) || ctx.Err() != nil {
			return err
		}
		sleep(ctx, wait)
		wait = min(2*wait, 2*time.Second)
	}
}

// backoff is the delay before the next delivery of a message delivered n
// times: RetryBase·2^(n-1), at most RetryMax.
func (m *Mailer) backoff(n uint64) time.Duration {
	return stream.Backoff(m.cfg.RetryBase, m.cfg.RetryMax, n)
}

// keepAlive tells JetStream the messages are in progress every ackWait/3
// until stop is called.
func keepAlive(msgs []jetstream.Msg, ackWait time.Duration) (stop func()) {
	every := ackWait / 3
	if every <= 0 {
		every = 10 * time.Second
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				for _, msg := range msgs {
					_ = msg.InProgress()
				}
			}
		}
	}()
	return func() {
		close(done)
		wg.Wait()
	}
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}
