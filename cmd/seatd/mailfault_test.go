package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"math/rand/v2"
	"net/url"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/seatd/seatd/events"
	"github.com/seatd/seatd/mailer/mailtest"
	"github.com/seatd/seatd/storage/storagetest"
)

// Promise 4 (invitations are delivered once) under faults: the mailer is
// killed with SIGKILL, again and again, while the SMTP server first
// refuses every message for a while and then takes them.

// mailPublicURL is the deployment's SEATD_PUBLIC_URL: the base of claim
// links and, being a name, the domain of Message-IDs.
const mailPublicURL = "https://seats.example.test"

// pendingLoad returns n assign requests spread round-robin over the
// tenants' pools, each to an address of its own and none claiming its seat
// at once: with pools large enough, n pending seats, each with one
// invitation to deliver.
func pendingLoad(tenants []tenant, n int) []events.Request {
	reqs := make([]events.Request, n)
	now := time.Now().UTC()
	for i := range reqs {
		p := i % len(tenants)
		ten := tenants[p]
		reqs[i] = events.Request{ID: uuid.NewString(), Op: events.OpAssign, CustomerID: ten.customerID,
			Assign:      &events.SeatAssign{SubscriptionID: ten.subID, Email: fmt.Sprintf("invitee-%d-%d@example.com", p, i/len(tenants))},
			SubmittedAt: now}
	}
	return reqs
}

// mailerKill is one SIGKILL of a mailer and what it interrupted.
type mailerKill struct {
	how string
	at  time.Time // the process was gone by then
	// held is the number of transactions the SMTP server was holding.
	held int
	// accepting: the SMTP server accepted messages from the killed mailer,
	// so the kill may have come between an acceptance and its record in
	// the ledger, the one window in which a kill may duplicate an
	// invitation.
	accepting bool
	// interrupted are the invitations whose attempt the kill cut short:
	// the ledger shows them 'sending' right after it, with an attempt
	// number no earlier kill left behind.
	interrupted []string
	unsent      int // invitations not yet recorded sent at the kill
}

func (k mailerKill) String() string {
	s := fmt.Sprintf("%s: unsent=%d interrupted=%d accepting=%t", k.how, k.unsent, len(k.interrupted), k.accepting)
	if k.held > 0 {
		s += fmt.Sprintf(" held=%d", k.held)
	}
	return s
}

// mailBacklog is what the mail stream still holds: messages not yet
// acknowledged, and of those the ones the mailers have in hand (or are
// waiting to redeliver after a nak).
func mailBacklog(ctx context.Context, js jetstream.JetStream) (inStream, ackPending int, err error) {
	s, err := js.Stream(ctx, events.MailStream)
	if err != nil {
		return -1, -1, err
	}
	si, err := s.Info(ctx)
	if err != nil {
		return -1, -1, err
	}
	c, err := js.Consumer(ctx, events.MailStream, events.MailerConsumer)
	if err != nil {
		return -1, -1, err
	}
	ci, err := c.Info(ctx)
	if err != nil {
		return -1, -1, err
	}
	return int(si.State.Msgs), ci.NumAckPending, nil
}

// claimToken is the token of the claim link in a message's text body.
func claimToken(m mailtest.Message) (string, error) {
	text, err := m.Text()
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(text, "\n") {
		link, ok := strings.CutPrefix(strings.TrimSpace(line), "Claim seat: ")
		if !ok {
			continue
		}
		u, err := url.Parse(link)
		if err != nil {
			return "", fmt.Errorf("claim link %q: %v", link, err)
		}
		if !strings.HasPrefix(link, mailPublicURL+"/claim?") {
			return "", fmt.Errorf("claim link %q is not under %s/claim", link, mailPublicURL)
		}
		if tok := u.Query().Get("token"); tok != "" {
			return tok, nil
		}
		return "", fmt.Errorf("claim link %q has no token", link)
	}
	return "", fmt.Errorf("no claim link in the text body")
}

// TestMailerKilledAndSMTPFailing delivers 200 invitations through a mailer
// process that is killed five times (three of them at random moments), while the SMTP server answers 451 to
// everything for the first 1.5s of the flow. Two of the kills are aimed:
// one while the server holds transactions before accepting them, one while
// it holds them after accepting them (the server has the message, the
// mailer does not know). At the end every invitation has arrived, the
// ledger says sent for all of them, every claim link carries the seat's
// token, and an invitation arrived twice only if a kill caught its
// delivery in the accepted-but-not-recorded window, with one Message-ID.
//
// The mailer's retry backoff is not configurable in seatd (RetryBase 2s,
// doubling): the failure window is shorter than 2s so that every
// invitation meets at most one 451; the test takes about 10s.
func TestMailerKilledAndSMTPFailing(t *testing.T) {
	const (
		pools, perPool = 4, 50
		n              = pools * perPool
		failWindow     = 1500 * time.Millisecond
		// mailAckWait is SEATD_ACK_WAIT: the mailer's consumer waits twice
		// this before it hands a killed mailer's messages to the next one.
		mailAckWait = time.Second
	)
	r := newRig(t, storagetest.NewDatabase(t))
	tenants := provision(t, r.db, pools, perPool)
	reqs := pendingLoad(tenants, n)

	smtp := mailtest.Start(t, mailtest.Config{})
	smtp.RejectAll(451, "4.3.0 mail system temporarily unavailable, try again later")
	env := []string{
		"SMTP_URL=" + smtp.URL() + "?tls=none&timeout=10s",
		"SEATD_PUBLIC_URL=" + mailPublicURL,
		// Every child sets the consumers up with its own value: the
		// worker gets it too, or the two would undo each other's.
		"SEATD_ACK_WAIT=" + mailAckWait.String(),
	}

	begin := time.Now()
	r.start("worker", "worker", env...)
	var (
		mailer  *proc
		started int
		kills   []mailerKill
		// acceptedBefore is the number of messages the SMTP server had
		// accepted when the running mailer started.
		acceptedBefore int
	)
	startMailer := func() {
		t.Helper()
		started++
		acceptedBefore = len(smtp.Messages())
		mailer = r.start(fmt.Sprintf("mailer-%d", started), "mailer", env...)
	}
	waitMailerStarted := func() {
		t.Helper()
		p := mailer
		waitFor(t, 30*time.Second, p.name+" to start", func() (bool, string) {
			if !p.Running() {
				t.Fatalf("%s exited: %s", p.name, p.cmd.ProcessState)
			}
			return strings.Contains(p.Output(), "mailer started"), "no \"mailer started\" yet"
		})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	// Attempts left 'sending' by a kill, as invitation#attempt: one that
	// is still there at the next kill was not retried yet, and is not
	// that kill's doing.
	leftSending := map[string]bool{}
	kill := func(how string) {
		t.Helper()
		k := mailerKill{how: how, held: smtp.Held()}
		mailer.Kill()
		k.at = time.Now()
		k.accepting = len(smtp.Messages()) > acceptedBefore
		rows, err := r.db.Pool.Query(ctx, `SELECT id::text, attempts FROM invitations WHERE delivery_state = 'sending'`)
		if err != nil {
			t.Fatal(err)
		}
		var id string
		var attempt int
		if _, err := pgx.ForEachRow(rows, []any{&id, &attempt}, func() error {
			key := fmt.Sprintf("%s#%d", id, attempt)
			if !leftSending[key] {
				leftSending[key] = true
				k.interrupted = append(k.interrupted, id)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if err := r.db.Pool.QueryRow(ctx, `SELECT $1::int - count(*) FROM invitations WHERE delivery_state = 'sent'`, n).
			Scan(&k.unsent); err != nil {
			t.Fatal(err)
		}
		kills = append(kills, k)
	}
	waitHeld := func() {
		t.Helper()
		waitFor(t, 20*time.Second, "the SMTP server to hold a transaction", func() (bool, string) {
			if !mailer.Running() {
				t.Fatalf("%s exited: %s", mailer.name, mailer.cmd.ProcessState)
			}
			return smtp.Held() > 0, fmt.Sprintf("%d transactions so far", smtp.Transactions())
		})
		// Deliberate: let the mailer's other slots reach the end of DATA.
		time.Sleep(150 * time.Millisecond)
	}

	startMailer()
	waitMailerStarted()
	published := make(chan publishResult, 1)
	// About 4s of publishing: new invitations keep coming through the
	// failure window and the kills after it, so the mailers have work in
	// hand when they die.
	go func() { published <- publishPaced(ctx, r.js, reqs, 5, 100*time.Millisecond) }()

	// 1. The SMTP server fails everything; the mailer dies at a random
	// moment of it.
	waitFor(t, 30*time.Second, "the first SMTP transaction", func() (bool, string) {
		return smtp.Transactions() > 0, "none yet"
	})
	windowOpen := time.Now()
	time.Sleep(time.Duration(150+rand.IntN(750)) * time.Millisecond) // deliberate fault timing
	kill("random, SMTP failing")
	startMailer()
	time.Sleep(time.Until(windowOpen.Add(failWindow)))

	// 2. The server recovers, but holds the first transactions before
	// accepting them: the mailer dies with messages that never arrived.
	smtp.Hold(mailtest.HoldBeforeAccept)
	smtp.AcceptAll()
	window := time.Since(windowOpen)
	rejectedInWindow := smtp.Transactions() - len(smtp.Messages())
	waitHeld()
	kill("held before accept")
	smtp.WaitForHeld(t, 0, 5*time.Second)

	// 3. The server accepts and stores the next ones but withholds its
	// 250: the mailer dies not knowing they were delivered.
	smtp.Hold(mailtest.HoldAfterAccept)
	startMailer()
	waitHeld()
	kill("held after accept")
	smtp.WaitForHeld(t, 0, 5*time.Second)
	smtp.Release()

	// 4. At a random moment while the server accepts.
	startMailer()
	waitMailerStarted()
	time.Sleep(time.Duration(100+rand.IntN(500)) * time.Millisecond) // deliberate fault timing
	kill("random, SMTP accepting")

	// 5. As soon as the ledger shows an attempt of this mailer in
	// progress: somewhere between MarkSending and MarkSent.
	startMailer()
	waitMailerStarted()
	caught := false
	for deadline := time.Now().Add(5 * time.Second); !caught && time.Now().Before(deadline); {
		rows, err := r.db.Pool.Query(ctx, `SELECT id::text, attempts FROM invitations WHERE delivery_state = 'sending'`)
		if err != nil {
			t.Fatal(err)
		}
		var id string
		var attempt int
		if _, err := pgx.ForEachRow(rows, []any{&id, &attempt}, func() error {
			caught = caught || !leftSending[fmt.Sprintf("%s#%d", id, attempt)]
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Millisecond) // deliberate: polling for the moment to strike
	}
	kill(fmt.Sprintf("mid-attempt (caught=%t)", caught))
	startMailer()

	pub := <-published
	if pub.err != nil {
		t.Fatal(pub.err)
	}
	waitSettled(t, r, ids(reqs), 30*time.Second)
	waitFor(t, 40*time.Second, "every invitation sent and the mail stream drained", func() (bool, string) {
		qctx, qcancel := context.WithTimeout(ctx, 5*time.Second)
		defer qcancel()
		var pending, sent, failed int
		err := r.db.Pool.QueryRow(qctx, `SELECT count(*), count(*) FILTER (WHERE i.delivery_state = 'sent'),
				count(*) FILTER (WHERE i.delivery_state = 'failed')
			FROM seats s JOIN invitations i ON i.id = s.invitation_id WHERE s.status = 'pending'`).
			Scan(&pending, &sent, &failed)
		if err == nil && failed > 0 {
			t.Fatalf("%d invitations recorded as failed: temporary failures and crashes must be retried", failed)
		}
		inStream, ackPending, serr := mailBacklog(qctx, r.js)
		return err == nil && serr == nil && pending == n && sent == n && inStream == 0 && ackPending == 0,
			fmt.Sprintf("%d pending seats, %d sent; mail stream: %d messages, %d unacknowledged; %d messages arrived; err %v %v",
				pending, sent, inStream, ackPending, len(smtp.Messages()), err, serr)
	})
	wall := time.Since(begin)
	if !mailer.Running() {
		t.Errorf("%s exited: %s", mailer.name, mailer.cmd.ProcessState)
	}
	// Nothing is left to send: nothing more arrives.
	arrived := len(smtp.Messages())
	time.Sleep(500 * time.Millisecond) // deliberate: a late copy would show now
	msgs := smtp.Messages()
	if len(msgs) != arrived {
		t.Errorf("%d messages arrived after every invitation was recorded sent", len(msgs)-arrived)
	}

	o := checkOutcome(t, r.db, ids(reqs))
	if o.applied != n {
		t.Errorf("%d requests applied, want %d", o.applied, n)
	}

	// The ledger, per pending seat's current invitation.
	type invitation struct {
		id, seatID, email, state, lastError string
		tokenHash                           []byte
		attempts                            int
	}
	// The recipient is the seat's email, else its customer's (as the
	// mailer reads it).
	rows, err := r.db.Pool.Query(ctx, `SELECT i.id::text, s.id::text, coalesce(s.email, c.email, ''), s.invitation_token_hash,
			i.delivery_state, i.attempts, coalesce(i.last_error, '')
		FROM seats s JOIN invitations i ON i.id = s.invitation_id LEFT JOIN customers c ON c.id = s.customer_id
		WHERE s.status = 'pending'`)
	if err != nil {
		t.Fatal(err)
	}
	var invs []invitation
	for rows.Next() {
		var inv invitation
		if err := rows.Scan(&inv.id, &inv.seatID, &inv.email, &inv.tokenHash, &inv.state, &inv.attempts, &inv.lastError); err != nil {
			t.Fatal(err)
		}
		invs = append(invs, inv)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if len(invs) != n {
		t.Fatalf("%d pending seats with an invitation, want %d", len(invs), n)
	}
	states := map[string]int{}
	srows, err := r.db.Pool.Query(ctx, `SELECT delivery_state, count(*) FROM invitations GROUP BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	for srows.Next() {
		var s string
		var c int
		if err := srows.Scan(&s, &c); err != nil {
			t.Fatal(err)
		}
		states[s] = c
	}
	if err := srows.Err(); err != nil {
		t.Fatal(err)
	}
	if states["sent"] != n || len(states) != 1 {
		t.Errorf("delivery ledger: %v, want sent=%d and nothing else", states, n)
	}

	// What arrived, by recipient: every recipient has one seat.
	byRcpt := map[string][]mailtest.Message{}
	for _, m := range msgs {
		if len(m.To) != 1 {
			t.Errorf("a message with recipients %v, want one", m.To)
			continue
		}
		rcpt := strings.ToLower(m.To[0])
		byRcpt[rcpt] = append(byRcpt[rcpt], m)
	}
	interrupted := map[string]string{} // invitation -> the kill that may have duplicated it
	for _, k := range kills {
		if !k.accepting {
			continue
		}
		for _, id := range k.interrupted {
			interrupted[id] = k.how
		}
	}
	killBetween := func(a, b time.Time) bool {
		for _, k := range kills {
			if k.at.After(a) && k.at.Before(b) {
				return true
			}
		}
		return false
	}
	var delivered, lost, duplicated, extraCopies, retried, linksChecked int
	for _, inv := range invs {
		if strings.Contains(inv.lastError, "451") {
			retried++
		}
		copies := byRcpt[strings.ToLower(inv.email)]
		delete(byRcpt, strings.ToLower(inv.email))
		if len(copies) == 0 {
			lost++
			t.Errorf("invitation %s of seat %s to %s never arrived (ledger: %s after %d attempts)",
				inv.id, inv.seatID, inv.email, inv.state, inv.attempts)
			continue
		}
		delivered++
		wantID := "<invitation-" + inv.id + "@seats.example.test>"
		for _, m := range copies {
			if got := m.MessageID(); got != wantID {
				t.Errorf("invitation %s: a copy with Message-ID %q, want %q", inv.id, got, wantID)
			}
			tok, err := claimToken(m)
			if err != nil {
				t.Errorf("invitation %s: %v", inv.id, err)
				continue
			}
			if h := sha256.Sum256([]byte(tok)); !bytes.Equal(h[:], inv.tokenHash) {
				t.Errorf("invitation %s: the claim link's token does not hash to the seat's invitation_token_hash", inv.id)
			}
			linksChecked++
		}
		if len(copies) > inv.attempts {
			t.Errorf("invitation %s arrived %d times in %d recorded attempts", inv.id, len(copies), inv.attempts)
		}
		if len(copies) == 1 {
			continue
		}
		duplicated++
		extraCopies += len(copies) - 1
		if _, ok := interrupted[inv.id]; !ok {
			t.Errorf("invitation %s arrived %d times, but no kill caught it in the accepted-but-not-recorded window", inv.id, len(copies))
		}
		// A kill must fall between a copy's transaction and the next
		// copy: the first began before the kill, though the server may
		// read the bytes the mailer wrote just before it died after it.
		sort.Slice(copies, func(i, j int) bool { return copies[i].Received.Before(copies[j].Received) })
		for i := 0; i+1 < len(copies); i++ {
			if !killBetween(copies[i].Started, copies[i+1].Received) {
				t.Errorf("invitation %s was sent from %s (arrived %s) and again at %s with no mailer kill in between", inv.id,
					copies[i].Started.Format("15:04:05.000"), copies[i].Received.Format("15:04:05.000"),
					copies[i+1].Received.Format("15:04:05.000"))
			}
		}
	}
	for rcpt, ms := range byRcpt {
		t.Errorf("%d messages to %s, who has no pending seat", len(ms), rcpt)
	}
	// The server stored every message it held after accepting it; each
	// of them was sent again, so each is a duplicate.
	heldAfterAccept := 0
	for _, k := range kills {
		if k.how == "held after accept" {
			heldAfterAccept = k.held
		}
	}
	if heldAfterAccept == 0 || extraCopies < heldAfterAccept {
		t.Errorf("%d extra copies, but the server held %d accepted messages when their mailer died", extraCopies, heldAfterAccept)
	}
	if rejectedInWindow == 0 {
		t.Errorf("the failure window hit nothing: no transaction refused")
	}
	rejected := smtp.Transactions() - len(msgs)

	desc := make([]string, len(kills))
	for i, k := range kills {
		desc[i] = k.String()
	}
	t.Logf("kills: %s", strings.Join(desc, "; "))
	t.Logf("SMTP: %d transactions, %d answered 451 (%d in the window), %d messages accepted; %d invitations retried after a 451; claim links checked %d",
		smtp.Transactions(), rejected, rejectedInWindow, len(msgs), retried, linksChecked)
	t.Logf("SUMMARY mailer kill -9 + SMTP failing: invitations=%d delivered=%d duplicates=%d (same Message-ID, %d extra copies, %d held after accept at a kill) failed=%d lost=%d mailer-kills=%d smtp-failure-window=%s (451 answers=%d) wall=%s",
		len(invs), delivered, duplicated, extraCopies, heldAfterAccept, states["failed"], lost, len(kills),
		window.Round(10*time.Millisecond), rejected, wall.Round(100*time.Millisecond))
}
