package mailer

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"log/slog"
	"net/mail"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/seatd/seatd/events"
	"github.com/seatd/seatd/mailer/mailtest"
	"github.com/seatd/seatd/storage"
	"github.com/seatd/seatd/storage/secret"
	"github.com/seatd/seatd/storage/storagetest"
)

func TestDeliversInvitation(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	inv := b.seedInvitation(t, seed{
		orgName: "Acme Inc", product: "Acme Pro", seatEmail: "new.hire@example.test",
		inviter: ptr("alice@acme.test"), expiresIn: 48 * time.Hour,
	})
	b.run(t, b.config(t))
	b.publish(t, inv)

	msgs := b.smtp.WaitForMessages(t, 1, 5*time.Second)
	m := msgs[0]
	if got, want := m.Subject(), "You've been invited to access Acme Pro"; got != want {
		t.Errorf("Subject = %q, want %q", got, want)
	}
	if got := m.Header.Get("To"); !strings.Contains(got, "new.hire@example.test") {
		t.Errorf("To = %q", got)
	}
	if len(m.To) != 1 || m.To[0] != "new.hire@example.test" {
		t.Errorf("RCPT TO = %v", m.To)
	}
	if got := m.Header.Get("From"); !strings.Contains(got, "no-reply@example.test") {
		t.Errorf("From = %q", got)
	}
	if got, want := m.MessageID(), "<invitation-"+inv.id+"@seats.example.test>"; got != want {
		t.Errorf("Message-ID = %q, want %q", got, want)
	}
	if _, err := m.Header.Date(); err != nil {
		t.Errorf("Date: %v", err)
	}
	text, err := m.Text()
	if err != nil {
		t.Fatal(err)
	}
	html, err := m.HTML()
	if err != nil {
		t.Fatal(err)
	}
	for _, body := range []struct{ name, s string }{{"text", text}, {"html", html}} {
		for _, want := range []string{
			"You're invited to join Acme Pro",
			"alice@acme.test has invited you to Acme Pro at Acme Inc. Claim your seat to get started.",
			"Claim seat",
			"This invitation expires on",
			"UTC (in 48 hours)",
			"new.hire@example.test",
		} {
			if !strings.Contains(unescapeHTML(body.s), want) {
				t.Errorf("%s body lacks %q:\n%s", body.name, want, body.s)
			}
		}
		link := claimLink(t, unescapeHTML(body.s))
		u, err := url.Parse(link)
		if err != nil {
			t.Fatal(err)
		}
		token := u.Query().Get("token")
		if token != inv.token {
			t.Errorf("%s body: token %q, want Keys.InvitationToken(nonce) = %q", body.name, token, inv.token)
		}
		var hash []byte
		if err := b.db.Pool.QueryRow(t.Context(), `SELECT invitation_token_hash FROM seats WHERE id = $1`, inv.seatID).Scan(&hash); err != nil {
			t.Fatal(err)
		}
		if sum := sha256.Sum256([]byte(token)); !bytes.Equal(sum[:], hash) {
			t.Errorf("%s body: SHA-256 of the link's token is not the seat's invitation_token_hash", body.name)
		}
	}
	if !strings.Contains(html, `href="`+testPublicURL+`/claim?token=`) {
		t.Errorf("HTML has no Claim seat link:\n%s", html)
	}

	r := b.waitState(t, inv.id, storage.DeliverySent, 5*time.Second)
	if r.attempts != 1 || !r.sent || r.lastError != "" {
		t.Errorf("ledger = %+v, want sent after 1 attempt", r)
	}
	st, err := b.db.InvitationDelivery(t.Context(), inv.seatID)
	if err != nil {
		t.Fatal(err)
	}
	if st.InvitationID != inv.id || st.State != storage.DeliverySent || st.Attempts != 1 || st.SentAt == nil {
		t.Errorf("InvitationDelivery = %+v", st)
	}
	b.waitSettled(t, 5*time.Second)
}

// With the mail drop (no SMTP_URL) the invitation lands in a file with a
// working claim link, and the ledger says sent.
func TestDeliversToMailDrop(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	dir := filepath.Join(t.TempDir(), "mail")
	cfg := b.config(t)
	var err error
	if cfg.Sender, err = NewMailDrop(dir, cfg.Log); err != nil {
		t.Fatal(err)
	}
	inv := b.seedInvitation(t, seed{seatEmail: "dev@example.test"})
	b.run(t, cfg)
	b.publish(t, inv)
	b.waitState(t, inv.id, storage.DeliverySent, 5*time.Second)

	raw, err := os.ReadFile(filepath.Join(dir, inv.id+".eml"))
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	text, err := mailtest.Message{Raw: raw, Header: parsed.Header}.Text()
	if err != nil {
		t.Fatal(err)
	}
	if token := tokenOf(t, claimLink(t, text)); token != inv.token {
		t.Errorf("token %q, want %q", token, inv.token)
	}
}

// The recipient falls back to the invited customer's email, the product to
// the order's, and the inviter is the order's buyer.
func TestDeliversToCustomerOfOrder(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	inv := b.seedInvitation(t, seed{orgName: "Globex", product: "Globex Lifetime", order: true, custEmail: "bob@globex.test",
		inviter: ptr("carol@globex.test")})
	b.run(t, b.config(t))
	b.publish(t, inv)

	m := b.smtp.WaitForMessages(t, 1, 5*time.Second)[0]
	if len(m.To) != 1 || m.To[0] != "bob@globex.test" {
		t.Errorf("RCPT TO = %v, want the customer's email", m.To)
	}
	if got, want := m.Subject(), "You've been invited to access Globex Lifetime"; got != want {
		t.Errorf("Subject = %q, want %q", got, want)
	}
	text, err := m.Text()
	if err != nil {
		t.Fatal(err)
	}
	if want := "carol@globex.test has invited you to Globex Lifetime at Globex."; !strings.Contains(text, want) {
		t.Errorf("text lacks %q:\n%s", want, text)
	}
	b.waitState(t, inv.id, storage.DeliverySent, 5*time.Second)
}

func TestTemporaryFailureIsRetried(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	b.smtp.RejectFirst(1, 451, "Greylisted, try again later")
	inv := b.seedInvitation(t, seed{seatEmail: "grey@example.test"})
	b.run(t, b.config(t))
	b.publish(t, inv)

	b.smtp.WaitForMessages(t, 1, 5*time.Second)
	r := b.waitState(t, inv.id, storage.DeliverySent, 5*time.Second)
	if r.attempts != 2 {
		t.Errorf("attempts = %d, want 2", r.attempts)
	}
	if !strings.Contains(r.lastError, "451") {
		t.Errorf("last_error = %q, want the 451 of the first attempt", r.lastError)
	}
	if n := b.smtp.Transactions(); n != 2 {
		t.Errorf("%d SMTP transactions, want 2", n)
	}
	b.waitSettled(t, 5*time.Second)
}

func TestPermanentFailureIsRecordedOnce(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	b.smtp.RejectAll(550, "No such user here")
	inv := b.seedInvitation(t, seed{seatEmail: "nobody@example.test"})
	b.run(t, b.config(t))
	b.publish(t, inv)

	r := b.waitState(t, inv.id, storage.DeliveryFailed, 5*time.Second)
	if !strings.Contains(r.lastError, "550") || !strings.Contains(r.lastError, "No such user here") {
		t.Errorf("last_error = %q, want the server's 550 reply", r.lastError)
	}
	b.waitSettled(t, 5*time.Second)
	// No loop: well past several retry delays, still one attempt.
	stays(t, 500*time.Millisecond, func() error {
		if r := b.ledger(t, inv.id); r.attempts != 1 || r.state != storage.DeliveryFailed {
			return fmt.Errorf("ledger = %+v, want failed after 1 attempt", r)
		}
		if n := b.smtp.Transactions(); n != 1 {
			return fmt.Errorf("%d SMTP transactions, want 1", n)
		}
		return nil
	})
	st, err := b.db.InvitationDelivery(t.Context(), inv.seatID)
	if err != nil {
		t.Fatal(err)
	}
	if st.State != storage.DeliveryFailed || st.Attempts != 1 || !strings.Contains(st.LastError, "550") || st.SentAt != nil {
		t.Errorf("InvitationDelivery = %+v", st)
	}
}

func TestTemporaryFailuresGiveUp(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	b.smtp.RejectAll(421, "Service not available")
	inv := b.seedInvitation(t, seed{seatEmail: "flaky@example.test"})
	cfg := b.config(t)
	cfg.MaxAttempts = 3
	b.run(t, cfg)
	b.publish(t, inv)

	r := b.waitState(t, inv.id, storage.DeliveryFailed, 5*time.Second)
	if r.attempts != 3 || !strings.Contains(r.lastError, "gave up after 3 attempts") || !strings.Contains(r.lastError, "421") {
		t.Errorf("ledger = %+v, want failed after 3 attempts with the 421", r)
	}
	b.waitSettled(t, 5*time.Second)
	if n := b.smtp.Transactions(); n != 3 {
		t.Errorf("%d SMTP transactions, want 3", n)
	}
}

// Only the seat's live invitation is sent: not one whose seat was revoked
// or claimed, not one superseded by a resend, not an expired one, and not
// one already sent.
func TestDeadInvitationsAreNotSent(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	b.run(t, b.config(t))

	revoked := b.seedInvitation(t, seed{seatEmail: "revoked@example.test"})
	b.revoke(t, revoked)
	b.publish(t, revoked)
	if r := b.waitState(t, revoked.id, storage.DeliveryCancelled, 5*time.Second); r.attempts != 0 {
		t.Errorf("revoked: ledger = %+v", r)
	}

	claimed := b.seedInvitation(t, seed{seatEmail: "claimed@example.test"})
	b.apply(t, events.Request{Op: events.OpClaim, TokenHash: secret.HashTokenHex(claimed.token)}, time.Hour)
	b.publish(t, claimed)
	b.waitState(t, claimed.id, storage.DeliveryCancelled, 5*time.Second)

	expired := b.seedInvitation(t, seed{seatEmail: "expired@example.test", expiresIn: -time.Minute})
	b.publish(t, expired)
	if r := b.waitState(t, expired.id, storage.DeliveryCancelled, 5*time.Second); !strings.Contains(r.lastError, "expired") {
		t.Errorf("expired: ledger = %+v", r)
	}

	// A resend before the mailer got to the first invitation: the old one
	// is cancelled, only the new one (with its own token) goes out.
	old := b.seedInvitation(t, seed{seatEmail: "resent@example.test"})
	fresh := b.resend(t, old)
	b.publish(t, old)
	b.publish(t, fresh)
	if r := b.waitState(t, old.id, storage.DeliveryCancelled, 5*time.Second); r.attempts != 0 {
		t.Errorf("superseded: ledger = %+v", r)
	}
	b.waitState(t, fresh.id, storage.DeliverySent, 5*time.Second)

	// The same request again, past JetStream's dedupe (another msg id).
	b.publishAs(t, fresh, "mail-"+fresh.id+"-again")
	b.waitSettled(t, 5*time.Second)

	msgs := b.smtp.Messages()
	if len(msgs) != 1 {
		t.Fatalf("%d messages sent, want only the resent invitation's", len(msgs))
	}
	text, err := msgs[0].Text()
	if err != nil {
		t.Fatal(err)
	}
	if token := tokenOf(t, claimLink(t, text)); token != fresh.token {
		t.Errorf("sent token %q, want the resent invitation's %q", token, fresh.token)
	}
	if r := b.ledger(t, fresh.id); r.attempts != 1 {
		t.Errorf("resent invitation: attempts = %d, want 1", r.attempts)
	}
	if n := b.smtp.Transactions(); n != 1 {
		t.Errorf("%d SMTP transactions, want 1", n)
	}
}

// An undecodable request or one for an unknown invitation is terminated,
// not retried, and does not stop the mailer.
func TestBadRequestsAreDropped(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	b.run(t, b.config(t))
	if _, err := b.js.Publish(t.Context(), events.MailSubject, []byte("{not json")); err != nil {
		t.Fatal(err)
	}
	b.publish(t, invitation{id: uuid.NewString(), seatID: uuid.NewString()})
	good := b.seedInvitation(t, seed{seatEmail: "good@example.test"})
	b.publish(t, good)
	b.waitState(t, good.id, storage.DeliverySent, 5*time.Second)
	b.waitSettled(t, 5*time.Second)
	if n := b.smtp.Transactions(); n != 1 {
		t.Errorf("%d SMTP transactions, want 1", n)
	}
}

// Several mailers on one consumer deliver each invitation once.
func TestConcurrentMailersSendEachOnce(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	const n = 30
	invs := make([]invitation, n)
	for i := range invs {
		invs[i] = b.seedInvitation(t, seed{seatEmail: fmt.Sprintf("user%02d@example.test", i)})
		b.publish(t, invs[i])
	}
	for range 3 {
		cfg := b.config(t)
		cfg.Concurrency = 3
		b.run(t, cfg)
	}
	msgs := b.smtp.WaitForMessages(t, n, 10*time.Second)
	b.waitSettled(t, 5*time.Second)
	seen := map[string]bool{}
	for _, m := range b.smtp.Messages() {
		if seen[m.MessageID()] {
			t.Errorf("%s sent twice", m.MessageID())
		}
		seen[m.MessageID()] = true
	}
	if len(msgs) != n || len(b.smtp.Messages()) != n {
		t.Errorf("%d messages, want %d", len(b.smtp.Messages()), n)
	}
	for _, inv := range invs {
		if r := b.ledger(t, inv.id); r.state != storage.DeliverySent || r.attempts != 1 {
			t.Errorf("invitation %s: %+v", inv.id, r)
		}
	}
}

// Stopping a mailer finishes the delivery in hand before Run returns.
func TestStopDrainsDeliveryInHand(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	inv := b.seedInvitation(t, seed{seatEmail: "drain@example.test"})
	b.smtp.Hold(mailtest.HoldBeforeAccept)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- New(b.config(t)).Run(ctx) }()
	b.publish(t, inv)
	b.smtp.WaitForHeld(t, 1, 5*time.Second)

	cancel()
	select {
	case err := <-done:
		t.Fatalf("Run returned (%v) with a delivery in hand", err)
	case <-time.After(200 * time.Millisecond):
	}
	b.smtp.Release()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after the delivery finished")
	}
	if r := b.ledger(t, inv.id); r.state != storage.DeliverySent {
		t.Errorf("ledger = %+v, want sent", r)
	}
	b.waitSettled(t, 5*time.Second)
}

// While Postgres is down mail requests wait in JetStream; when it is back
// they are delivered.
func TestDatabaseOutageLosesNothing(t *testing.T) {
	t.Parallel()
	pg := storagetest.NewServer(t)
	b := setup(t, setupOpts{dbURL: pg.URL()})
	inv := b.seedInvitation(t, seed{seatEmail: "outage@example.test"})
	cfg := b.config(t)
	cfg.RetryMax = 200 * time.Millisecond
	b.run(t, cfg)

	if err := pg.Stop(); err != nil {
		t.Fatal(err)
	}
	b.publish(t, inv)
	storagetest.Eventually(t, 10*time.Second, "the mail consumer to settle", func() error {
		cons, err := b.js.Consumer(t.Context(), events.MailStream, events.MailerConsumer)
		if err != nil {
			return err
		}
		if info := cons.CachedInfo(); info.NumRedelivered == 0 {
			return fmt.Errorf("not redelivered yet (%d delivered)", info.Delivered.Consumer)
		}
		return nil
	})
	if n := b.smtp.Transactions(); n != 0 {
		t.Fatalf("%d SMTP transactions while the database was down", n)
	}
	if err := pg.Start(); err != nil {
		t.Fatal(err)
	}
	b.smtp.WaitForMessages(t, 1, 10*time.Second)
	b.waitState(t, inv.id, storage.DeliverySent, 5*time.Second)
	b.waitSettled(t, 5*time.Second)
}

// Neither the SMTP password nor a claim token appears in the mailer's log
// or in the ledger, whatever happens.
func TestSecretsStayOutOfLogsAndLedger(t *testing.T) {
	t.Parallel()
	const password = "s3cret-Passw0rd"
	b := setup(t, setupOpts{smtp: mailtest.Config{Username: "seatd", Password: password}})
	var logs syncBuffer
	cfg := b.config(t)
	cfg.Log = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	cfg.MaxAttempts = 2

	// A wrong password: the failure is recorded without the password.
	wrong, err := ParseSMTPURL(strings.Replace(b.smtp.URL(), password, password+"-wrong", 1))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Sender, err = NewSMTPSender(wrong)
	if err != nil {
		t.Fatal(err)
	}
	rejected := b.seedInvitation(t, seed{seatEmail: "rejected@example.test"})
	stop := b.run(t, cfg)
	b.publish(t, rejected)
	r := b.waitState(t, rejected.id, storage.DeliveryFailed, 5*time.Second)
	if !strings.Contains(r.lastError, "535") {
		t.Errorf("last_error = %q, want the 535 authentication failure", r.lastError)
	}
	stop()

	cfg.Sender = b.sender(t, "")
	sent := b.seedInvitation(t, seed{seatEmail: "sent@example.test"})
	b.run(t, cfg)
	b.publish(t, sent)
	m := b.smtp.WaitForMessages(t, 1, 5*time.Second)[0]
	if m.AuthUser != "seatd" {
		t.Errorf("AuthUser = %q, want seatd", m.AuthUser)
	}
	b.waitState(t, sent.id, storage.DeliverySent, 5*time.Second)

	out := logs.String()
	for _, secret := range []string{password, rejected.token, sent.token, url.QueryEscape(sent.token)} {
		if strings.Contains(out, secret) {
			t.Errorf("log contains a secret %q:\n%s", secret, out)
		}
		if strings.Contains(r.lastError, secret) {
			t.Errorf("last_error contains a secret %q", secret)
		}
	}
}

func tokenOf(t *testing.T, link string) string {
	t.Helper()
	u, err := url.Parse(link)
	if err != nil {
		t.Fatal(err)
	}
	return u.Query().Get("token")
}

func unescapeHTML(s string) string {
	return strings.NewReplacer("&#39;", "'", "&amp;", "&", "&#34;", `"`, "&quot;", `"`).Replace(s)
}
