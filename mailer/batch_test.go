package mailer

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/seatd/seatd/events"
	"github.com/seatd/seatd/mailer/mailtest"
	"github.com/seatd/seatd/storage"
)

// One batch holding every kind of request: each gets its own outcome. The
// greylisted one alone is retried, the bounced one alone fails, the dead
// ones are cancelled unsent, the bad ones dropped, a second request for an
// invitation in the same batch does not send it twice, and the rest go out
// once.
func TestBatchWithMixedOutcomes(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	ok1 := b.seedInvitation(t, seed{seatEmail: "ok1@example.test"})
	ok2 := b.seedInvitation(t, seed{seatEmail: "ok2@example.test"})
	grey := b.seedInvitation(t, seed{seatEmail: "grey@example.test"})
	b.smtp.RejectTo(grey.to, 1, 451, "4.7.1 Greylisted, try again later")
	bounce := b.seedInvitation(t, seed{seatEmail: "bounce@example.test"})
	b.smtp.RejectTo(bounce.to, -1, 550, "5.1.1 No such user here")
	revoked := b.seedInvitation(t, seed{seatEmail: "revoked@example.test"})
	b.revoke(t, revoked)
	old := b.seedInvitation(t, seed{seatEmail: "resent@example.test"})
	fresh := b.resend(t, old)
	unknown := invitation{id: uuid.NewString(), seatID: uuid.NewString()}

	for _, inv := range []invitation{ok1, grey, bounce, revoked, old, fresh, unknown, ok2} {
		b.publish(t, inv)
	}
	b.publishAs(t, ok1, "mail-"+ok1.id+"-again")
	if _, err := b.js.Publish(t.Context(), events.MailSubject, []byte("{not json")); err != nil {
		t.Fatal(err)
	}

	cfg := b.config(t)
	cfg.Concurrency = 1
	m := New(cfg)
	var (
		mu      sync.Mutex
		batches [][]string
	)
	m.testHookBatch = func(ids []string) {
		mu.Lock()
		defer mu.Unlock()
		batches = append(batches, slices.Clone(ids))
	}
	runMailer(t, m)

	for _, inv := range []invitation{ok1, ok2, fresh, grey} {
		b.waitState(t, inv.id, storage.DeliverySent, 10*time.Second)
	}
	b.waitState(t, bounce.id, storage.DeliveryFailed, 5*time.Second)
	b.waitSettled(t, 10*time.Second)

	mu.Lock()
	first := batches[0]
	mu.Unlock()
	for _, inv := range []invitation{ok1, grey, bounce, revoked, old, fresh, unknown, ok2} {
		if !slices.Contains(first, inv.id) {
			t.Errorf("invitation %s (to %s) not in the first batch %v", inv.id, inv.to, first)
		}
	}

	for _, tc := range []struct {
		inv      invitation
		state    storage.DeliveryState
		attempts int
		lastErr  string
	}{
		{ok1, storage.DeliverySent, 1, ""},
		{ok2, storage.DeliverySent, 1, ""},
		{fresh, storage.DeliverySent, 1, ""},
		{grey, storage.DeliverySent, 2, "451"},
		{bounce, storage.DeliveryFailed, 1, "No such user here"},
		{revoked, storage.DeliveryCancelled, 0, ""},
		{old, storage.DeliveryCancelled, 0, ""},
	} {
		r := b.ledger(t, tc.inv.id)
		if r.state != tc.state || r.attempts != tc.attempts || !strings.Contains(r.lastError, tc.lastErr) {
			t.Errorf("%s: %+v, want %s after %d attempts, last error with %q", tc.inv.to, r, tc.state, tc.attempts, tc.lastErr)
		}
	}
	stays(t, 300*time.Millisecond, func() error {
		got := map[string]int{}
		for _, msg := range b.smtp.Messages() {
			got[msg.To[0]]++
		}
		want := map[string]int{ok1.to: 1, ok2.to: 1, fresh.to: 1, grey.to: 1}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			return fmt.Errorf("messages by recipient %v, want %v", got, want)
		}
		// ok1, ok2, fresh; grey refused then accepted; bounce refused.
		if n := b.smtp.Transactions(); n != 6 {
			return fmt.Errorf("%d SMTP transactions, want 6", n)
		}
		return nil
	})
}

// Two mailers whose batches overlap, as when mail requests are published
// again (a stream restored, a relay repeating itself) while the first
// copies are still being delivered: the second mailer takes what the first
// does not hold, and every invitation reaches the server once.
func TestOverlappingMailersSendEachOnce(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	invs := make([]invitation, 16)
	for i := range invs {
		invs[i] = b.seedInvitation(t, seed{seatEmail: fmt.Sprintf("overlap%02d@example.test", i)})
	}
	first, later := invs[:12], invs[12:]

	b.smtp.Hold(mailtest.HoldBeforeAccept)
	// The held messages wait for the second mailer to start and be held
	// too: on a loaded machine that can take longer than the usual test
	// timeout, which would turn the hold into a failed attempt.
	held := "?timeout=1m"
	cfgA := b.config(t)
	cfgA.Sender = b.sender(t, held)
	cfgA.Concurrency = 1 // busy with its batch, it takes no other
	// Published before it starts, so its first batch is all twelve.
	for _, inv := range first {
		b.publish(t, inv)
	}
	b.run(t, cfgA)
	b.smtp.WaitForHeld(t, 4, 10*time.Second) // the first mailer's batch, on its 4 connections

	for _, inv := range first {
		b.publishAs(t, inv, "mail-"+inv.id+"-again")
	}
	for _, inv := range later {
		b.publish(t, inv)
	}
	// The second mailer is another replica: a database pool of its own.
	dbB, err := storage.Open(t.Context(), b.dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(dbB.Close)
	cfgB := b.config(t)
	cfgB.DB, cfgB.Sender = dbB, b.sender(t, held)
	b.run(t, cfgB)
	// It sends what nobody holds; the copies of the first twelve wait.
	b.smtp.WaitForHeld(t, 8, 10*time.Second)
	if n := len(b.smtp.Messages()); n != 0 {
		t.Fatalf("%d messages accepted while held", n)
	}
	b.smtp.Release()

	for _, inv := range invs {
		b.waitState(t, inv.id, storage.DeliverySent, 10*time.Second)
	}
	b.waitSettled(t, 10*time.Second)
	stays(t, 300*time.Millisecond, func() error {
		if n := b.smtp.Transactions(); n != len(invs) {
			return fmt.Errorf("%d SMTP transactions, want %d", n, len(invs))
		}
		return nil
	})
	seen := map[string]int{}
	for _, msg := range b.smtp.Messages() {
		seen[msg.MessageID()]++
	}
	for _, inv := range invs {
		id := "<invitation-" + inv.id + "@seats.example.test>"
		if seen[id] != 1 {
			t.Errorf("invitation to %s arrived %d times", inv.to, seen[id])
		}
		if r := b.ledger(t, inv.id); r.attempts != 1 {
			t.Errorf("invitation to %s: %d attempts, want 1", inv.to, r.attempts)
		}
	}
}
