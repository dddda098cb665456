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
