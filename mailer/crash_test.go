package mailer

import (
	"fmt"
	"testing"
	"time"

	"github.com/seatd/seatd/mailer/mailtest"
	"github.com/seatd/seatd/storage"
)

// A mailer killed while the SMTP server has not yet accepted the message
// loses nothing and duplicates nothing: the restarted mailer sends it, and
// exactly one copy is accepted overall.
func TestCrashBeforeAcceptanceSendsOnce(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	b.setAckWait(t, time.Second)
	inv := b.seedInvitation(t, seed{seatEmail: "crash-before@example.test"})

	b.smtp.Hold(mailtest.HoldBeforeAccept)
	first := b.startChild(t)
	b.publish(t, inv)
	b.smtp.WaitForHeld(t, 1, 10*time.Second)
	if err := first.kill(); !killedBySIGKILL(err) {
		t.Fatalf("first mailer ended with %v, want SIGKILL", err)
	}
	// The server notices the client is gone and drops the transaction.
	b.smtp.WaitForHeld(t, 0, 5*time.Second)
	if n := len(b.smtp.Messages()); n != 0 {
		t.Fatalf("%d messages accepted from the killed mailer", n)
	}
	if r := b.ledger(t, inv.id); r.state != storage.DeliverySending || r.attempts != 1 {
		t.Fatalf("ledger after the crash: %+v, want sending after 1 attempt", r)
	}

	b.smtp.Release()
	b.startChild(t)
	msgs := b.smtp.WaitForMessages(t, 1, 10*time.Second)
	r := b.waitState(t, inv.id, storage.DeliverySent, 5*time.Second)
	if r.attempts != 2 {
		t.Errorf("attempts = %d, want 2", r.attempts)
	}
	if got, want := msgs[0].MessageID(), "<invitation-"+inv.id+"@seats.example.test>"; got != want {
		t.Errorf("Message-ID = %q, want %q", got, want)
	}
	b.waitSettled(t, 5*time.Second)
	stays(t, 300*time.Millisecond, func() error {
		if n := len(b.smtp.Messages()); n != 1 {
			return fmt.Errorf("%d messages accepted, want exactly 1", n)
		}
		return nil
	})
}

// A mailer killed after the SMTP server accepted the message but before it
// recorded 'sent' is the one case that can duplicate: the message arrives
// at most twice, both copies with the same Message-ID, and the ledger ends
// sent.
func TestCrashAfterAcceptanceSendsAtMostTwiceWithOneMessageID(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		// crash kills the first mailer inside the window.
		crash func(t *testing.T, b *bundle) *child
	}{{
		// The mailer has Send's success in hand and dies before recording.
		name: "mailer dies after Send returns",
		crash: func(t *testing.T, b *bundle) *child {
			c := b.startChild(t, childCrashAfterEnv+"=1")
			b.smtp.WaitForMessages(t, 1, 10*time.Second)
			if err := c.wait(10 * time.Second); !killedBySIGKILL(err) {
				t.Fatalf("first mailer ended with %v, want SIGKILL", err)
			}
			return c
		},
	}, {
		// The server has stored the message; its 250 never arrives.
		name: "mailer dies waiting for the final 250",
		crash: func(t *testing.T, b *bundle) *child {
			b.smtp.Hold(mailtest.HoldAfterAccept)
			c := b.startChild(t)
			b.smtp.WaitForHeld(t, 1, 10*time.Second)
			if err := c.kill(); !killedBySIGKILL(err) {
				t.Fatalf("first mailer ended with %v, want SIGKILL", err)
			}
			b.smtp.WaitForHeld(t, 0, 5*time.Second)
			b.smtp.Release()
			return c
		},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, setupOpts{})
			b.setAckWait(t, time.Second)
			inv := b.seedInvitation(t, seed{seatEmail: "crash-after@example.test"})
			b.publish(t, inv)
			tc.crash(t, b)
			if n := len(b.smtp.Messages()); n != 1 {
				t.Fatalf("%d messages accepted before the restart, want 1", n)
			}
			if r := b.ledger(t, inv.id); r.state != storage.DeliverySending {
				t.Fatalf("ledger after the crash: %+v, want sending", r)
			}

			b.startChild(t)
			r := b.waitState(t, inv.id, storage.DeliverySent, 10*time.Second)
			if r.attempts != 2 {
				t.Errorf("attempts = %d, want 2", r.attempts)
			}
			b.waitSettled(t, 5*time.Second)
			msgs := b.smtp.Messages()
			if len(msgs) != 2 {
				t.Fatalf("%d messages accepted, want 2 (one per attempt)", len(msgs))
			}
			want := "<invitation-" + inv.id + "@seats.example.test>"
			for i, m := range msgs {
				if m.MessageID() != want {
					t.Errorf("message %d: Message-ID %q, want %q", i, m.MessageID(), want)
				}
			}
			stays(t, 300*time.Millisecond, func() error {
				if n := len(b.smtp.Messages()); n != 2 {
					return fmt.Errorf("%d messages accepted, want 2", n)
				}
				return nil
			})
		})
	}
}

// A mailer killed in the middle of a batch, right after the server
// accepted one of its messages: what the ledger recorded as sent is not
// sent again; the one message accepted but not yet recorded is, with the
// same Message-ID; the rest of the batch, marked sending but never handed
// over, goes out once. Nothing is lost.
func TestCrashMidBatch(t *testing.T) {
	t.Parallel()
	const n, crashAt = 10, 4
	b := setup(t, setupOpts{})
	b.setAckWait(t, time.Second)
	invs := make([]invitation, n)
	for i := range invs {
		invs[i] = b.seedInvitation(t, seed{seatEmail: fmt.Sprintf("batch%02d@example.test", i)})
		b.publish(t, invs[i])
	}
	// One connection: the messages go one after another, so the kill
	// finds exactly crashAt accepted.
	first := b.startChild(t, childCrashAfterEnv+"="+fmt.Sprint(crashAt), childConnectionsEnv+"=1")
	if err := first.wait(20 * time.Second); !killedBySIGKILL(err) {
		t.Fatalf("first mailer ended with %v, want SIGKILL", err)
	}
	accepted := b.smtp.Messages()
	if len(accepted) != crashAt {
		t.Fatalf("%d messages accepted before the kill, want %d", len(accepted), crashAt)
	}
	states := map[storage.DeliveryState]int{}
	for _, inv := range invs {
		r := b.ledger(t, inv.id)
		states[r.state]++
		if r.attempts != 1 {
			t.Errorf("invitation to %s: %d attempts at the kill, want 1 (the whole batch started)", inv.to, r.attempts)
		}
	}
	if states[storage.DeliverySent] != crashAt-1 || states[storage.DeliverySending] != n-crashAt+1 {
		t.Fatalf("ledger at the kill: %v, want %d sent and the rest sending", states, crashAt-1)
	}
	unrecorded := accepted[crashAt-1].MessageID()

	b.startChild(t)
	for _, inv := range invs {
		b.waitState(t, inv.id, storage.DeliverySent, 15*time.Second)
	}
	b.waitSettled(t, 10*time.Second)
	stays(t, 300*time.Millisecond, func() error {
		if got := len(b.smtp.Messages()); got != n+1 {
			return fmt.Errorf("%d messages accepted, want %d: each invitation once, the unrecorded one twice", got, n+1)
		}
		return nil
	})
	copies := map[string]int{}
	for _, m := range b.smtp.Messages() {
		copies[m.MessageID()]++
	}
	for _, inv := range invs {
		id := "<invitation-" + inv.id + "@seats.example.test>"
		want := 1
		if id == unrecorded {
			want = 2
		}
		if copies[id] != want {
			t.Errorf("invitation to %s arrived %d times, want %d", inv.to, copies[id], want)
		}
	}
}
