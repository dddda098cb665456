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

	// Concurrency is the number of invitations one Mailer delivers at
	// once; default 4. Each holds one database connection for the length
	// of its SMTP conversation, so keep it below the pool's size.
	Concurrency int
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

	// testHookAfterSend, if set, runs after every Send, before the outcome
	// is recorded. The crash tests use it to die in that window.
	testHookAfterSend func(*Message, error)
}

// New returns a Mailer for cfg. Run checks the configuration.
func New(cfg Config) *Mailer {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 4
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
// messages in hand and returns nil. Several Mailers may run on the same
// durable consumer, in one process or many.
//
// A message is acknowledged only after its outcome is recorded, so a
// Mailer killed at any moment loses nothing: JetStream redelivers the
// message after the consumer's AckWait. While a delivery is in progress
// the Mailer tells JetStream so (InProgress) every AckWait/3, so a slow
// SMTP server does not cause a redelivery to another replica.
func (m *Mailer) Run(ctx context.Context) error {
	if err := m.check(); err != nil {
		return err
	}
	cons, err := m.consumer(ctx)
	if err != nil || cons == nil {
		return err
	}
	ackWait := cons.CachedInfo().Config.AckWait
	m.log.Info("mailer started", "concurrency", m.cfg.Concurrency, "ack_wait", ackWait)

	var wg sync.WaitGroup
	defer wg.Wait()
	slots := make(chan struct{}, m.cfg.Concurrency)
	for {
		// Ask for as many messages as there are free slots, at least one.
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return nil
		}
		n := 1
	more:
		for n < cap(slots) {
			select {
			case slots <- struct{}{}:
				n++
			default:
				break more
			}
		}
		fctx, cancel := context.WithTimeout(ctx, m.cfg.FetchWait)
		batch, err := cons.Fetch(n, jetstream.FetchContext(fctx))
		if err != nil {
			cancel()
			for range n {
				<-slots
			}
			if ctx.Err() != nil {
				return nil
			}
			m.log.Warn("fetch failed; retrying", "error", err)
			sleep(ctx, time.Second)
			continue
		}
		got := 0
		for msg := range batch.Messages() {
			got++
			if ctx.Err() != nil {
				// Stopping: hand it to another replica now rather than
				// after AckWait.
				_ = msg.Nak()
				<-slots
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { <-slots }()
				m.handle(ctx, msg, ackWait)
			}()
		}
		cancel()
		for range n - got {
			<-slots
		}
	}
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
	ack action = iota
	nak
	term
)

// handle delivers one message and settles it. It runs to completion even
// when Run's context is cancelled: stopping drains, it does not abandon.
func (m *Mailer) handle(runCtx context.Context, msg jetstream.Msg, ackWait time.Duration) {
	ctx := context.WithoutCancel(runCtx)
	stop := keepAlive(msg, ackWait)
	var delivered uint64 = 1
	if md, err := msg.Metadata(); err == nil {
		delivered = md.NumDelivered
	}
	act, delay := m.deliverMsg(ctx, msg.Data(), delivered)
	stop()
	var err error
	switch act {
	case ack:
		actx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err = msg.DoubleAck(actx)
		cancel()
	case nak:
		err = msg.NakWithDelay(delay)
	case term:
		err = msg.Term()
	}
	if err != nil {
		// Harmless: the message comes back and the ledger says what
		// happened to it.
		m.log.Warn("could not settle mail request; it will be redelivered", "error", err)
	}
}

func (m *Mailer) deliverMsg(ctx context.Context, data []byte, delivered uint64) (action, time.Duration) {
	var req events.MailRequest
	if err := json.Unmarshal(data, &req); err != nil {
		m.log.Error("undecodable mail request; dropping it", "error", err)
		return term, 0
	}
	if !events.IsUUID(req.InvitationID) {
		m.log.Error("mail request without a valid invitation id; dropping it", "invitation_id", req.InvitationID)
		return term, 0
	}
	ctx, span := telemetry.StartConsumer(telemetry.FromTraceMap(ctx, req.Trace), nil, "seatd.mailer invitation",
		attribute.String("seatd.request_id", req.RequestID), attribute.String("seatd.invitation_id", req.InvitationID))
	defer span.End()
	if delivered > 1 {
		telemetry.Redelivered(events.MailerConsumer)
	}
	return m.deliver(ctx, req, delivered)
}

// deliver runs one delivery attempt and says how to settle its message.
func (m *Mailer) deliver(ctx context.Context, req events.MailRequest, delivered uint64) (action, time.Duration) {
	log := m.log.With("request_id", req.RequestID, "invitation_id", req.InvitationID, "seat_id", req.SeatID, "delivery", delivered)
	d, err := m.cfg.DB.StartDelivery(ctx, req.InvitationID)
	switch {
	case err == nil:
	case errors.Is(err, storage.ErrNotDeliverable):
		log.Info("invitation not sent", "reason", err.Error())
		return ack, 0
	case errors.Is(err, storage.ErrDeliveryBusy):
		log.Info("invitation is being delivered by another mailer; checking again later")
		return nak, m.cfg.RetryBase
	case events.ErrorCode(err) == events.CodeNotFound:
		log.Error("mail request for an unknown invitation; dropping it")
		return term, 0
	default:
		delay := m.backoff(delivered)
		log.Warn("cannot load invitation; will retry", "error", err, "retry_in", delay)
		return nak, delay
	}
	defer d.Close()
	inv := d.Mail
	if req.SeatID != "" && req.SeatID != inv.SeatID {
		log.Error("mail request names another seat than its invitation's; dropping it", "invitation_seat_id", inv.SeatID)
		return term, 0
	}

	token := m.cfg.Keys.InvitationToken(inv.Nonce)
	if !secret.SameHash(secret.HashToken(token), inv.TokenHash) {
		// The link would not work. The likely cause is a secret key that
		// differs from the worker's: wait for an operator (or another
		// replica) rather than send a broken link or give up.
		delay := m.backoff(delivered)
		log.Error("the derived claim token does not match the seat's token hash; is the secret key the worker's? will retry", "retry_in", delay)
		return nak, delay
	}
	fail := func(reason string) (action, time.Duration) {
		if err := m.record(ctx, func(ctx context.Context) error { return d.MarkFailed(ctx, reason) }); err != nil {
			delay := m.backoff(delivered)
			log.Warn("cannot record failure; will retry", "reason", reason, "error", err, "retry_in", delay)
			return nak, delay
		}
		telemetry.Email(telemetry.EmailFailed)
		log.Warn("invitation delivery failed", "reason", reason)
		return ack, 0
	}
	if inv.To == "" {
		return fail("the seat has no email address")
	}
	msg, err := m.composer.Compose(Invitation{
		ID: inv.InvitationID, To: inv.To, ProductName: inv.ProductName, Organization: inv.Organization,
		InviterEmail: inv.InviterEmail, Token: token, ExpiresAt: inv.ExpiresAt,
	}, time.Now())
	if err != nil {
		return fail(err.Error())
	}

	attempt, err := d.MarkSending(ctx)
	if errors.Is(err, storage.ErrNotDeliverable) {
		log.Info("invitation not sent", "reason", err.Error())
		return ack, 0
	}
	if err != nil {
		delay := m.backoff(delivered)
		log.Warn("cannot record attempt; will retry", "error", err, "retry_in", delay)
		return nak, delay
	}
	log = log.With("attempt", attempt, "to", msg.To)

	sendErr := m.cfg.Sender.Send(ctx, msg)
	if m.testHookAfterSend != nil {
		m.testHookAfterSend(msg, sendErr)
	}

	switch {
	case sendErr == nil:
		if err := m.record(ctx, d.MarkSent); err != nil {
			// The ledger still says sending, so the redelivery sends it
			// again, with the same Message-ID. Better twice than never.
			delay := m.backoff(delivered)
			log.Error("invitation sent but not recorded; it will be sent again", "error", err, "retry_in", delay)
			return nak, delay
		}
		telemetry.Email(telemetry.EmailSent)
		log.Info("invitation sent", "message_id", msg.MessageID)
		return ack, 0
	case IsPermanent(sendErr):
		return fail(sendErr.Error())
	case attempt >= m.cfg.MaxAttempts:
		return fail(fmt.Sprintf("gave up after %d attempts: %v", attempt, sendErr))
	default:
		// Back off by SMTP attempts, not deliveries: redeliveries after a
		// crashed mailer say nothing about the server.
		delay := m.backoff(uint64(attempt))
		if err := m.record(ctx, func(ctx context.Context) error { return d.MarkRetry(ctx, sendErr.Error()) }); err != nil {
			log.Warn("cannot record temporary failure", "error", err)
		}
		telemetry.Email(telemetry.EmailRetried)
		log.Warn("temporary delivery failure; will retry", "error", sendErr, "retry_in", delay)
		return nak, delay
	}
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

// keepAlive tells JetStream the message is in progress every ackWait/3
// until stop is called.
func keepAlive(msg jetstream.Msg, ackWait time.Duration) (stop func()) {
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
				_ = msg.InProgress()
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
