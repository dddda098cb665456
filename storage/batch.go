package storage

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/seatd/seatd/events"
	"github.com/seatd/seatd/storage/secret"
)

// errBatchConflict aborts a set-based batch when a concurrent transaction
// created a customer or member this batch meant to create: the batch's
// decisions assumed the new row, so the caller applies the requests again
// one at a time (ApplySerial), which reads the winner's row.
var errBatchConflict = errors.New("set-based batch: a customer or member was created concurrently")

// Apply applies requests in one transaction and returns one result per
// request, in order. Each request is recorded in the request ledger in the
// same transaction as its effect, so applying a request a second time (a
// duplicate publish, a redelivery after a crash between commit and ack)
// returns the recorded result and changes nothing.
//
// Assigns are applied set-based: the ledger rows of the whole batch are
// written in one statement; each run of consecutive assigns takes its pools'
// row locks once, in id order, reads every recipient and duplicate it needs
// in a few statements, decides each request in memory in batch order (so
// the outcome of each request is the one it would get applied alone at that
// point of the serial order) and writes seats, invitations, counters, outbox
// and ledger rows with one multi-row statement each, pipelined. Other
// operations are applied one at a time under a savepoint.
//
// A request refused for a business reason gets a failed result and leaves
// no trace but its ledger row. Any other error (including a concurrent
// creation of the same new customer) aborts the whole transaction and is
// returned: the caller retries with ApplySerial, one request per
// transaction, so one bad request cannot block a batch.
func (db *DB) Apply(ctx context.Context, st Settings, reqs []events.Request) ([]events.Result, error) {
	results := make([]events.Result, len(reqs))
	err := db.inTx(ctx, func(tx pgx.Tx) error {
		// Microseconds, as Postgres stores them, so seats built here equal
		// seats read back.
		now := time.Now().UTC().Truncate(time.Microsecond)
		ledger, err := recordBatch(ctx, tx, reqs, now)
		if err != nil {
			return err
		}
		first := ledger.first // the same request twice in one batch: the second replays the first
		done := make([]bool, len(reqs))
		for i, res := range ledger.stored {
			results[i], done[i] = res, true
		}
		for i := 0; i < len(reqs); {
			if done[i] || first[i] != i {
				i++
				continue
			}
			if reqs[i].Op != events.OpAssign {
				res, err := db.applyQueued(ctx, tx, st, reqs[i], now)
				if err != nil {
					return fmt.Errorf("request %s: %w", reqs[i].ID, err)
				}
				results[i], done[i] = res, true
				i++
				continue
			}
			// A run of consecutive assigns still to apply.
			var run []int
			j := i
			for ; j < len(reqs) && (done[j] || first[j] != j || reqs[j].Op == events.OpAssign); j++ {
				if !done[j] && first[j] == j {
					run = append(run, j)
				}
			}
			if err := db.assignSet(ctx, tx, st, reqs, run, results, now); err != nil {
				return err
			}
			for _, k := range run {
				done[k] = true
			}
			i = j
		}
		for i := range reqs {
			if first[i] != i {
				results[i] = results[first[i]]
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return results, nil
}

// ApplySerial applies requests one at a time, each under a savepoint, one
// statement per step: the path a batch falls back to when Apply fails.
func (db *DB) ApplySerial(ctx context.Context, st Settings, reqs []events.Request) ([]events.Result, error) {
	results := make([]events.Result, len(reqs))
	err := db.inTx(ctx, func(tx pgx.Tx) error {
		now := time.Now().UTC().Truncate(time.Microsecond)
		for i, r := range reqs {
			res, err := db.applyOne(ctx, tx, st, r, now)
			if err != nil {
				return fmt.Errorf("request %s: %w", r.ID, err)
			}
			results[i] = res
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return results, nil
}

// batchLedger is what recordBatch learnt: first[i] is the index of the
// first request in the batch with reqs[i]'s id, and stored holds the
// outcomes of requests the ledger had already completed.
type batchLedger struct {
	first  []int
	stored map[int]events.Result
}

// recordBatch writes (or, for requests the ingress recorded, locks and
// counts a delivery of) every request's ledger row in one statement. The
// rows are locked in id order, so two workers holding overlapping batches
// queue rather than deadlock.
func recordBatch(ctx context.Context, tx pgx.Tx, reqs []events.Request, now time.Time) (batchLedger, error) {
	l := batchLedger{first: make([]int, len(reqs)), stored: map[int]events.Result{}}
	index := make(map[string]int, len(reqs))
	var order []int
	copies := map[string]int32{}
	for i, r := range reqs {
		copies[r.ID]++
		if j, ok := index[r.ID]; ok {
			l.first[i] = j
			continue
		}
		index[r.ID] = i
		l.first[i] = i
		order = append(order, i)
	}
	sort.Slice(order, func(a, b int) bool { return reqs[order[a]].ID < reqs[order[b]].ID })
	n := len(order)
	ids, ops, callers, payloads := make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	batchIDs, batchIdx, created, deliveries := make([]*string, n), make([]*int32, n), make([]time.Time, n), make([]int32, n)
	for k, i := range order {
		r := reqs[i]
		payload, err := json.Marshal(r)
		if err != nil {
			return l, err
		}
		ids[k], ops[k], callers[k], payloads[k] = r.ID, string(r.Op), Caller(r), string(payload)
		if r.BatchID != "" {
			bid, bix := r.BatchID, int32(r.BatchIndex)
			batchIDs[k], batchIdx[k] = &bid, &bix
		}
		deliveries[k] = copies[r.ID]
		created[k] = r.SubmittedAt
		if created[k].IsZero() {
			created[k] = now
		}
	}
	// Requests published without passing the ingress (imports, replays)
	// have no ledger row yet; the others are locked by the update.
	rows, err := tx.Query(ctx, `INSERT INTO requests (id, op, caller, payload, batch_id, batch_index, created_at, deliveries)
		SELECT u.id::uuid, u.op, u.caller, u.payload::jsonb, u.bid::uuid, u.bix, u.created, u.n
		FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::int[], $7::timestamptz[], $8::int[])
			WITH ORDINALITY AS u(id, op, caller, payload, bid, bix, created, n, ord)
		ORDER BY u.ord
		ON CONFLICT (id) DO UPDATE SET deliveries = requests.deliveries + EXCLUDED.deliveries
		RETURNING id::text, status, result`,
		ids, ops, callers, payloads, batchIDs, batchIdx, created, deliveries)
	if err != nil {
		return l, fmt.Errorf("record batch: %w", err)
	}
	defer rows.Close()
	seen := 0
	for rows.Next() {
		var (
			id, status string
			stored     []byte
		)
		if err := rows.Scan(&id, &status, &stored); err != nil {
			return l, err
		}
		seen++
		if status == "queued" {
			continue
		}
		var res events.Result
		if err := json.Unmarshal(stored, &res); err != nil {
			return l, fmt.Errorf("request %s: stored result: %w", id, err)
		}
		i, ok := index[id]
		if !ok {
			return l, fmt.Errorf("record batch: unexpected request %s", id)
		}
		l.stored[i] = res
	}
	if err := rows.Err(); err != nil {
		return l, fmt.Errorf("record batch: %w", err)
	}
	if seen != n {
		return l, fmt.Errorf("record batch: %d of %d ledger rows", seen, n)
	}
	return l, nil
}

// applyQueued applies one request whose ledger row this transaction holds
// as queued, under a savepoint, and completes its ledger row.
func (db *DB) applyQueued(ctx context.Context, tx pgx.Tx, st Settings, r events.Request, now time.Time) (events.Result, error) {
	sp, err := tx.Begin(ctx) // savepoint: a failed request leaves no trace but its ledger entry
	if err != nil {
		return events.Result{}, err
	}
	var res events.Result
	switch r.Op {
	case events.OpAssign:
		res, err = db.assign(ctx, sp, st, r, now)
	case events.OpResend:
		res, err = db.resend(ctx, sp, st, r, now)
	case events.OpRevoke:
		res, err = db.revoke(ctx, sp, r, now)
	case events.OpClaim:
		res, err = db.claim(ctx, sp, st, r, now)
	default:
		err = events.Errorf(events.CodeInvalid, "unknown op %q", r.Op)
	}
	var codeErr *events.Error
	switch {
	case err == nil:
		if err := sp.Commit(ctx); err != nil {
			return events.Result{}, err
		}
	case errors.As(err, &codeErr):
		if err := sp.Rollback(ctx); err != nil {
			return events.Result{}, err
		}
		res = events.Result{Code: codeErr.Code, Detail: codeErr.Detail}
	default:
		return events.Result{}, err
	}
	res.RequestID = r.ID
	return res, complete(ctx, tx, res, now)
}

// assignSet applies the assigns reqs[run...] (all queued in the ledger, in
// batch order) set-based and stores their results.
func (db *DB) assignSet(ctx context.Context, tx pgx.Tx, st Settings, reqs []events.Request, run []int, results []events.Result, now time.Time) error {
	refuse := func(k int, e *events.Error) {
		results[k] = events.Result{RequestID: reqs[k].ID, Code: e.Code, Detail: e.Detail}
	}
	pending := map[int]bool{} // requests not yet decided
	for _, k := range run {
		pending[k] = true
	}

	// 1. Containers: checkouts name their pool; every pool is locked once,
	// subscriptions then orders, each in id order.
	type poolRef struct{ table, id string }
	ref := map[int]poolRef{}
	var checkoutIDs []string
	for _, k := range run {
		a := reqs[k].Assign
		switch {
		case a.SubscriptionID != "":
			ref[k] = poolRef{"subscriptions", a.SubscriptionID}
		case a.OrderID != "":
			ref[k] = poolRef{"orders", a.OrderID}
		default:
			checkoutIDs = append(checkoutIDs, a.CheckoutID)
		}
	}
	if len(checkoutIDs) > 0 {
		type checkout struct {
			customer       string
			subID, orderID *string
		}
		found := map[string]checkout{}
		rows, err := tx.Query(ctx, `SELECT id::text, customer_id::text, subscription_id::text, order_id::text
			FROM checkouts WHERE id = ANY($1::uuid[])`, checkoutIDs)
		if err != nil {
			return fmt.Errorf("checkouts: %w", err)
		}
		for rows.Next() {
			var id string
			var c checkout
			if err := rows.Scan(&id, &c.customer, &c.subID, &c.orderID); err != nil {
				rows.Close()
				return err
			}
			found[id] = c
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		for _, k := range run {
			a := reqs[k].Assign
			if a.CheckoutID == "" {
				continue
			}
			c, ok := found[a.CheckoutID]
			switch {
			case !ok || c.customer != reqs[k].CustomerID: // only customers name checkouts
				refuse(k, errCheckoutNotFound)
				delete(pending, k)
			case c.subID != nil:
				ref[k] = poolRef{"subscriptions", *c.subID}
			default:
				ref[k] = poolRef{"orders", *c.orderID}
			}
		}
	}
	var subIDs, orderIDs []string
	seen := map[poolRef]bool{}
	for _, k := range run {
		r, ok := ref[k]
		if !pending[k] || !ok || seen[r] {
			continue
		}
		seen[r] = true
		if r.table == "orders" {
			orderIDs = append(orderIDs, r.id)
		} else {
			subIDs = append(subIDs, r.id)
		}
	}
	pools := map[poolRef]*pool{}
	for _, t := range []struct {
		table string
		ids   []string
	}{{"subscriptions", subIDs}, {"orders", orderIDs}} {
		if len(t.ids) == 0 {
			continue
		}
		// The row locks serialise capacity checks for these pools with
		// every other worker until commit.
		rows, err := tx.Query(ctx, `SELECT p.id::text, p.customer_id::text, c.email, c.organization_id::text,
				p.status, p.seats, p.seats_used, o.seat_based_pricing, o.member_model
			FROM `+t.table+` p JOIN customers c ON c.id = p.customer_id JOIN organizations o ON o.id = c.organization_id
			WHERE p.id = ANY($1::uuid[])
			ORDER BY p.id
			FOR UPDATE OF p`, t.ids)
		if err != nil {
			return fmt.Errorf("lock pools: %w", err)
		}
		for rows.Next() {
			p := &pool{table: t.table}
			if err := rows.Scan(&p.id, &p.customerID, &p.customerEmail, &p.orgID,
				&p.status, &p.seats, &p.used, &p.seatPricing, &p.memberModel); err != nil {
				rows.Close()
				return err
			}
			pools[poolRef{t.table, p.id}] = p
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return fmt.Errorf("lock pools: %w", err)
		}
	}

	// 2. The checks that need only the pool, in Polar's order. Capacity
	// depends on the requests before, so it is decided in the pass below.
	poolOf := map[int]*pool{}
	for _, k := range run {
		if !pending[k] {
			continue
		}
		r := ref[k]
		p := pools[r]
		if p == nil || !OwnerOf(reqs[k]).owns(p) {
			refuse(k, events.Errorf(events.CodeNotFound, "%s not found", pool{table: r.table}.kind()))
			delete(pending, k)
			continue
		}
		poolOf[k] = p
	}

	// 3. What the requests name, in one round trip: customers by id or
	// external id, existing customers by email (customer model), and the
	// purchasers' members by id or external id.
	var (
		byIDKeys              []string
		extOrgs, extIDs       []string
		emailOrgs, emailAddrs []string
		memberIDs             []string
		memExtCusts, memExts  []string
		byID                  = map[orgKey]customerRef{}
		byExt                 = map[orgKey]customerRef{}
		byEmail               = map[orgKey]customerRef{}
		want                  = map[string]bool{} // every (kind, org or customer, key) asked for once
		members               = newMemberSet()
	)
	ask := func(kind, scope, key string) bool {
		k := kind + "\x00" + scope + "\x00" + key
		if want[k] {
			return false
		}
		want[k] = true
		return true
	}
	for _, k := range run {
		p := poolOf[k]
		if p == nil {
			continue
		}
		a := reqs[k].Assign
		switch {
		case a.CustomerID != "":
			if ask("id", p.orgID, a.CustomerID) {
				byIDKeys = append(byIDKeys, a.CustomerID)
			}
		case a.ExternalCustomerID != "":
			if ask("ext", p.orgID, a.ExternalCustomerID) {
				extOrgs, extIDs = append(extOrgs, p.orgID), append(extIDs, a.ExternalCustomerID)
			}
		case a.MemberID != "":
			if ask("member", "", a.MemberID) {
				memberIDs = append(memberIDs, a.MemberID)
			}
		case a.ExternalMemberID != "":
			if ask("member-ext", p.customerID, a.ExternalMemberID) {
				memExtCusts, memExts = append(memExtCusts, p.customerID), append(memExts, a.ExternalMemberID)
			}
		case !memberPath(p, a):
			if key := events.EmailKey(a.Email); ask("email", p.orgID, key) {
				emailOrgs, emailAddrs = append(emailOrgs, p.orgID), append(emailAddrs, key)
			}
		}
	}
	if len(byIDKeys)+len(extIDs)+len(emailAddrs)+len(memberIDs)+len(memExts) > 0 {
		b := &pgx.Batch{}
		b.Queue(`SELECT organization_id::text, id::text, id::text, email FROM customers WHERE id = ANY($1::uuid[])`, byIDKeys)
		b.Queue(`SELECT c.organization_id::text, k.ext, c.id::text, c.email
			FROM unnest($1::uuid[], $2::text[]) AS k(org, ext)
			JOIN customers c ON c.organization_id = k.org AND c.external_id = k.ext`, extOrgs, extIDs)
		b.Queue(`SELECT c.organization_id::text, k.email, c.id::text, c.email
			FROM unnest($1::uuid[], $2::text[]) AS k(org, email)
			JOIN customers c ON c.organization_id = k.org AND c.email_key = k.email`, emailOrgs, emailAddrs)
		b.Queue(`SELECT `+memberColumns+` FROM members m WHERE m.id = ANY($1::uuid[])`, memberIDs)
		b.Queue(`SELECT `+memberColumns+` FROM unnest($1::uuid[], $2::text[]) AS k(cust, ext)
			JOIN members m ON m.customer_id = k.cust AND m.external_id = k.ext`, memExtCusts, memExts)
		err := sendReads(ctx, tx, b, "recipients",
			func(rows pgx.Rows) error { return scanCustomers(rows, byID) },
			func(rows pgx.Rows) error { return scanCustomers(rows, byExt) },
			func(rows pgx.Rows) error { return scanCustomers(rows, byEmail) },
			members.scan, members.scan)
		if err != nil {
			return err
		}
	}

	// 4. Members by email (the member path finds or creates the occupant by
	// email), live seats of every candidate holder, and inviters, in one
	// round trip.
	type cand struct {
		custID, custEmail string // the recipient customer, or the occupant's email on the member path
		found             bool   // false: no customer with that id or external id
	}
	cands := map[int]cand{}
	var (
		memCusts, memEmails []string
		dupPools, dupHolder []string
		inviterIDs          []string
	)
	for _, k := range run {
		p := poolOf[k]
		if p == nil {
			continue
		}
		a := reqs[k].Assign
		var c cand
		switch {
		case a.CustomerID != "":
			cu, ok := byID[orgKey{p.orgID, a.CustomerID}]
			c = cand{custID: cu.id, custEmail: cu.email, found: ok}
		case a.ExternalCustomerID != "":
			cu, ok := byExt[orgKey{p.orgID, a.ExternalCustomerID}]
			c = cand{custID: cu.id, custEmail: cu.email, found: ok}
		case memberPath(p, a):
			c = cand{custEmail: a.Email, found: true}
		default:
			// Found, or created below if the request gets that far.
			cu, ok := byEmail[orgKey{p.orgID, events.EmailKey(a.Email)}]
			c = cand{custID: cu.id, custEmail: cu.email, found: true}
			if !ok {
				c.custEmail = a.Email
			}
		}
		cands[k] = c
		switch {
		case !c.found:
		case memberPath(p, a):
			// The occupant's address: the named member's, else the one given.
			email := c.custEmail
			if m := members.named(p.customerID, a); m != nil {
				email = m.Email
			}
			if email != "" {
				if ask("member-email", p.customerID, events.EmailKey(email)) {
					memCusts, memEmails = append(memCusts, p.customerID), append(memEmails, events.EmailKey(email))
				}
				dupPools, dupHolder = append(dupPools, p.id), append(dupHolder, "email:"+events.EmailKey(email))
			}
		case c.custID != "":
			dupPools, dupHolder = append(dupPools, p.id), append(dupHolder, "customer:"+c.custID)
		}
		if reqs[k].MemberID != "" {
			inviterIDs = append(inviterIDs, reqs[k].MemberID)
		}
	}
	live := map[orgKey]bool{} // (pool, holder) with a live seat
	inviters := map[string]string{}
	{
		b := &pgx.Batch{}
		b.Queue(`SELECT `+memberColumns+` FROM unnest($1::uuid[], $2::text[]) AS k(cust, email)
			JOIN members m ON m.customer_id = k.cust AND m.email_key = k.email`, memCusts, memEmails)
		// Written to match seats_one_per_holder, so each pair is an index
		// probe however many seats the pool holds.
		b.Queue(`SELECT k.pool::text, k.holder FROM unnest($1::uuid[], $2::text[]) AS k(pool, holder)
			WHERE EXISTS (SELECT 1 FROM seats s WHERE coalesce(s.subscription_id, s.order_id) = k.pool
				AND s.holder = k.holder AND s.status IN ('pending', 'claimed'))`, dupPools, dupHolder)
		b.Queue(`SELECT id::text, email FROM members WHERE id = ANY($1::uuid[])`, inviterIDs)
		err := sendReads(ctx, tx, b, "holders", members.scan,
			func(rows pgx.Rows) error {
				for rows.Next() {
					var pool, holder string
					if err := rows.Scan(&pool, &holder); err != nil {
						return err
					}
					live[orgKey{pool, holder}] = true
				}
				return nil
			},
			func(rows pgx.Rows) error {
				for rows.Next() {
					var id, email string
					if err := rows.Scan(&id, &email); err != nil {
						return err
					}
					inviters[id] = email
				}
				return nil
			})
		if err != nil {
			return err
		}
	}

	// 5. Decide each request in batch order, exactly as the serial path
	// would: capacity counts the seats granted earlier in the batch, a
	// customer or member created (or a member linked to an external id) for
	// an earlier request is found by a later one, and a seat granted
	// earlier is a duplicate for a later one.
	var w batchWrites
	newCustomers := map[orgKey]string{} // (org, lower email) → id created in this batch
	for _, k := range run {
		p := poolOf[k]
		if p == nil {
			continue
		}
		r := reqs[k]
		a := r.Assign
		if !p.seatPricing {
			refuse(k, errSeatPricingDisabled)
			continue
		}
		if p.table == "orders" && p.status != "paid" {
			refuse(k, errOrderNotPaid)
			continue
		}
		if p.seats-p.used <= 0 {
			refuse(k, noAvailableSeats(p.id))
			continue
		}
		c := cands[k]
		if !c.found {
			if memberPath(p, a) {
				refuse(k, errMemberCustomerNotFound)
			} else {
				refuse(k, customerNotFound(a))
			}
			continue
		}
		// The recipient, found or to be created; nothing is created (and
		// no member linked) before the duplicate check passes, as the
		// serial path rolls it back.
		var (
			rc      recipient
			change  memberChange
			newCust bool
		)
		if memberPath(p, a) {
			m, ch, refusal := members.resolve(p.customerID, c.custEmail, a, now)
			if refusal != nil {
				refuse(k, refusal)
				continue
			}
			change = ch
			rc = recipient{customerID: p.customerID, customerEmail: m.Email, member: &m,
				holder: "email:" + events.EmailKey(m.Email)}
		} else {
			custID, custEmail := c.custID, c.custEmail
			if custID == "" { // an email no customer of the organization has yet
				if id, ok := newCustomers[orgKey{p.orgID, events.EmailKey(a.Email)}]; ok {
					custID, custEmail = id, w.customerEmail[id]
				} else {
					custID, newCust = uuid.NewString(), true
				}
			}
			rc = recipient{customerID: custID, customerEmail: custEmail, holder: "customer:" + custID}
		}
		holderKey := orgKey{p.id, rc.holder}
		if live[holderKey] {
			refuse(k, alreadyAssigned(a, rc))
			continue
		}
		switch change {
		case memberCreated:
			members.add(*rc.member)
			w.members = append(w.members, *rc.member)
		case memberLinked:
			members.add(*rc.member)
			w.linkIDs, w.linkExts = append(w.linkIDs, rc.member.ID), append(w.linkExts, *rc.member.ExternalID)
		}
		if newCust {
			newCustomers[orgKey{p.orgID, events.EmailKey(a.Email)}] = rc.customerID
			w.addCustomer(rc.customerID, p.orgID, a.Email)
		}
		live[holderKey] = true
		p.used++
		inviter := p.customerEmail
		if r.MemberID != "" {
			if e, ok := inviters[r.MemberID]; ok {
				inviter = e
			}
		}
		seat, err := w.addSeat(st, r, p, rc, inviter, now)
		if err != nil {
			return err
		}
		results[k] = events.Result{RequestID: r.ID, Code: events.CodeOK, Seat: &seat}
	}

	// 6. Write everything, pipelined.
	for _, k := range run {
		if err := w.complete(results[k]); err != nil {
			return err
		}
	}
	for _, p := range pools {
		if d := w.granted[p]; d != 0 {
			w.bumpPool(p, d)
		}
	}
	return w.send(ctx, tx, now)
}

// sendReads sends a batch of queries (on a transaction or the pool) and
// hands each one's rows to its reader, in order.
func sendReads(ctx context.Context, q interface {
	SendBatch(context.Context, *pgx.Batch) pgx.BatchResults
}, b *pgx.Batch, what string, readers ...func(pgx.Rows) error) error {
	br := q.SendBatch(ctx, b)
	for _, read := range readers {
		rows, err := br.Query()
		if err == nil {
			err = read(rows)
			rows.Close()
			err = errors.Join(err, rows.Err())
		}
		if err != nil {
			_ = br.Close() // the error already in hand is the one to report
			return fmt.Errorf("%s: %w", what, err)
		}
	}
	if err := br.Close(); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}

// customerRef is a customer a batch read.
type customerRef struct{ id, email string }

// scanCustomers reads (scope, key, id, email) rows into into.
func scanCustomers(rows pgx.Rows, into map[orgKey]customerRef) error {
	for rows.Next() {
		var scope, key, id, email string
		if err := rows.Scan(&scope, &key, &id, &email); err != nil {
			return err
		}
		into[orgKey{scope, key}] = customerRef{id, email}
	}
	return nil
}

// batchWrites collects a set-based batch's rows, one slice per column.
type batchWrites struct {
	customerEmail                           map[string]string
	custIDs, custOrgs, custEmails           []string
	members                                 []events.Member // created
	linkIDs, linkExts                       []string        // existing members taking an external id
	seatCols                                seatColumnsBuf
	invIDs, invSeats                        []string
	invNonces, invHashes                    [][]byte
	invExpires                              []time.Time
	poolTables                              []string
	poolIDs                                 []string
	poolDeltas                              []int32
	obSubjects, obMsgIDs, obPayloads        []string
	ledIDs, ledStatus, ledCodes, ledResults []string
	granted                                 map[*pool]int // seats granted per pool
}

type seatColumnsBuf struct {
	id, sub, ord, status, customer, member, email, holder, inv []*string
	tokenHash                                                  [][]byte
	expires, claimed                                           []*time.Time
	meta                                                       []*string
	inviter                                                    []string
}

func (w *batchWrites) addCustomer(id, org, email string) {
	if w.customerEmail == nil {
		w.customerEmail = map[string]string{}
	}
	w.customerEmail[id] = email
	w.custIDs, w.custOrgs, w.custEmails = append(w.custIDs, id), append(w.custOrgs, org), append(w.custEmails, email)
}

func (w *batchWrites) bumpPool(p *pool, d int) {
	w.poolTables = append(w.poolTables, p.table)
	w.poolIDs = append(w.poolIDs, p.id)
	w.poolDeltas = append(w.poolDeltas, int32(d))
}

func ptr[T any](v T) *T { return &v }

// addSeat builds the seat a granted assign creates, exactly as the serial
// path does, and queues its rows.
func (w *batchWrites) addSeat(st Settings, r events.Request, p *pool, rc recipient, inviter string, now time.Time) (events.CustomerSeat, error) {
	a := r.Assign
	if w.granted == nil {
		w.granted = map[*pool]int{}
	}
	w.granted[p]++
	customerID := rc.customerID
	seat := events.CustomerSeat{ID: uuid.NewString(), CreatedAt: now, Status: events.SeatPending,
		CustomerID: &customerID, MemberID: rc.memberID(), Member: rc.member, Email: rc.email(),
		CustomerEmail: ptr(rc.customerEmail), SeatMetadata: a.Metadata}
	poolID := p.id
	var sub, ord *string
	if p.table == "orders" {
		seat.OrderID, ord = &poolID, &poolID
	} else {
		seat.SubscriptionID, sub = &poolID, &poolID
	}
	var meta *string
	if len(a.Metadata) > 0 {
		meta = ptr(string(a.Metadata))
	}
	var (
		invID     *string
		tokenHash []byte
		evType    = events.SeatAssigned
	)
	if a.ImmediateClaim {
		claimed := now
		seat.Status, seat.ClaimedAt, evType = events.SeatClaimed, &claimed, events.SeatClaimedEvent
	} else {
		id, expires, nonce := uuid.NewString(), now.Add(st.invitationTTL()), secret.NewNonce()
		invID, seat.InvitationTokenExpiresAt = &id, &expires
		tokenHash = secret.HashToken(st.Keys.InvitationToken(nonce))
		w.invIDs, w.invSeats = append(w.invIDs, id), append(w.invSeats, seat.ID)
		w.invNonces, w.invExpires = append(w.invNonces, nonce), append(w.invExpires, expires)
		w.invHashes = append(w.invHashes, tokenHash)
	}
	c := &w.seatCols
	c.id = append(c.id, ptr(seat.ID))
	c.sub, c.ord = append(c.sub, sub), append(c.ord, ord)
	c.status = append(c.status, ptr(string(seat.Status)))
	c.customer, c.member, c.email = append(c.customer, &customerID), append(c.member, seat.MemberID), append(c.email, seat.Email)
	c.holder, c.inv = append(c.holder, ptr(rc.holder)), append(c.inv, invID)
	c.tokenHash = append(c.tokenHash, tokenHash)
	c.expires, c.claimed = append(c.expires, seat.InvitationTokenExpiresAt), append(c.claimed, seat.ClaimedAt)
	c.meta, c.inviter = append(c.meta, meta), append(c.inviter, inviter)
	// The outbox keeps the serial path's order: the mail request, then the
	// seat's first event (version 1; the seat row starts at version 2).
	if invID != nil {
		if err := w.outbox(events.MailSubject, "mail-"+*invID, events.MailRequest{InvitationID: *invID, SeatID: seat.ID,
			RequestID: r.ID, Trace: r.Trace}); err != nil {
			return seat, err
		}
	}
	ev := seatEvent(evType, seat, 1, now)
	if err := w.outbox(events.SeatEventSubject(ev.Type), "event-"+ev.ID, ev); err != nil {
		return seat, err
	}
	return seat, nil
}

func (w *batchWrites) outbox(subject, msgID string, v any) error {
	payload, err := json.Marshal(v)
	if err != nil {
		return err
	}
	w.obSubjects, w.obMsgIDs, w.obPayloads = append(w.obSubjects, subject), append(w.obMsgIDs, msgID), append(w.obPayloads, string(payload))
	return nil
}

func (w *batchWrites) complete(res events.Result) error {
	b, err := json.Marshal(res)
	if err != nil {
		return err
	}
	status := "succeeded"
	if !res.OK() {
		status = "failed"
	}
	w.ledIDs, w.ledStatus, w.ledCodes, w.ledResults = append(w.ledIDs, res.RequestID), append(w.ledStatus, status),
		append(w.ledCodes, string(res.Code)), append(w.ledResults, string(b))
	return nil
}

// send writes the batch with one statement per table, in one round trip.
func (w *batchWrites) send(ctx context.Context, tx pgx.Tx, now time.Time) error {
	b := &pgx.Batch{}
	var checks []func(int64) error
	queue := func(check func(int64) error, sql string, args ...any) {
		b.Queue(sql, args...)
		checks = append(checks, check)
	}
	expect := func(n int) func(int64) error {
		return func(got int64) error {
			if got != int64(n) {
				return errBatchConflict
			}
			return nil
		}
	}
	if n := len(w.custIDs); n > 0 {
		// A concurrent transaction creating the same customer makes this
		// insert skip a row: the batch is then retried serially.
		keys := make([]string, n)
		for i, e := range w.custEmails {
			keys[i] = events.EmailKey(e)
		}
		queue(expect(n), `INSERT INTO customers (id, organization_id, email, email_key)
			SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[])
			ON CONFLICT (organization_id, email_key) DO NOTHING`, w.custIDs, w.custOrgs, w.custEmails, keys)
	}
	if n := len(w.members); n > 0 {
		ids, custs, emails, keys := make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		exts := make([]*string, n)
		for i, m := range w.members {
			ids[i], custs[i], emails[i], keys[i], exts[i] = m.ID, m.CustomerID, m.Email, events.EmailKey(m.Email), m.ExternalID
		}
		queue(expect(n), `INSERT INTO members (id, customer_id, email, email_key, role, external_id, created_at)
			SELECT id, cust, email, key, 'member', ext, $6 FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[])
				AS u(id, cust, email, key, ext)
			ON CONFLICT (customer_id, email_key) DO NOTHING`, ids, custs, emails, keys, exts, now)
	}
	if n := len(w.linkIDs); n > 0 {
		// After the inserts: a member created by an earlier request of the
		// batch may be the one a later request links.
		queue(expect(n), `UPDATE members m SET external_id = u.ext, modified_at = $3
			FROM unnest($1::uuid[], $2::text[]) AS u(id, ext) WHERE m.id = u.id AND m.external_id IS NULL`,
			w.linkIDs, w.linkExts, now)
	}
	if n := len(w.seatCols.id); n > 0 {
		c := w.seatCols
		queue(expect(n), `INSERT INTO seats (id, subscription_id, order_id, status, customer_id, member_id, email, holder,
				invitation_id, invitation_token_hash, invitation_token_expires_at, claimed_at, seat_metadata, inviter_email,
				created_at, version)
			SELECT u.id::uuid, u.sub::uuid, u.ord::uuid, u.status, u.customer::uuid, u.member::uuid, u.email, u.holder,
				u.inv::uuid, u.hash, u.expires, u.claimed, u.meta::jsonb, u.inviter, $15, 2
			FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[],
				$9::text[], $10::bytea[], $11::timestamptz[], $12::timestamptz[], $13::text[], $14::text[])
				AS u(id, sub, ord, status, customer, member, email, holder, inv, hash, expires, claimed, meta, inviter)`,
			c.id, c.sub, c.ord, c.status, c.customer, c.member, c.email, c.holder, c.inv, c.tokenHash, c.expires, c.claimed,
			c.meta, c.inviter, now)
	}
	if n := len(w.invIDs); n > 0 {
		queue(expect(n), `INSERT INTO invitations (id, seat_id, nonce, token_hash, expires_at, created_at, updated_at)
			SELECT id, seat, nonce, hash, expires, $6, $6
			FROM unnest($1::uuid[], $2::uuid[], $3::bytea[], $4::bytea[], $5::timestamptz[]) AS u(id, seat, nonce, hash, expires)`,
			w.invIDs, w.invSeats, w.invNonces, w.invHashes, w.invExpires, now)
	}
	for _, table := range []string{"subscriptions", "orders"} {
		var ids []string
		var deltas []int32
		for i, t := range w.poolTables {
			if t == table {
				ids, deltas = append(ids, w.poolIDs[i]), append(deltas, w.poolDeltas[i])
			}
		}
		if len(ids) == 0 {
			continue
		}
		// The CHECK on seats_used is the last line of defence against oversell.
		queue(expect(len(ids)), `UPDATE `+table+` p SET seats_used = p.seats_used + d.n
			FROM unnest($1::uuid[], $2::int[]) AS d(id, n) WHERE p.id = d.id`, ids, deltas)
	}
	if n := len(w.obMsgIDs); n > 0 {
		// Ids in the order given, so the relay publishes each seat's
		// messages in the order they were written.
		queue(expect(n), `INSERT INTO outbox (subject, msg_id, payload)
			SELECT s, m, p::jsonb FROM unnest($1::text[], $2::text[], $3::text[]) WITH ORDINALITY AS u(s, m, p, o)
			ORDER BY o`, w.obSubjects, w.obMsgIDs, w.obPayloads)
	}
	if n := len(w.ledIDs); n > 0 {
		queue(expect(n), `UPDATE requests r SET status = u.status, code = u.code, result = u.result::jsonb, completed_at = $5
			FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[]) AS u(id, status, code, result)
			WHERE r.id = u.id`, w.ledIDs, w.ledStatus, w.ledCodes, w.ledResults, now)
	}
	if len(checks) == 0 {
		return nil
	}
	br := tx.SendBatch(ctx, b)
	for _, check := range checks {
		tag, err := br.Exec()
		if err != nil {
			_ = br.Close() // the error already in hand is the one to report
			if isUniqueViolation(err, "") {
				return fmt.Errorf("%w: %v", errBatchConflict, err)
			}
			return fmt.Errorf("write batch: %w", err)
		}
		if err := check(tag.RowsAffected()); err != nil {
			_ = br.Close() // the error already in hand is the one to report
			return err
		}
	}
	return br.Close()
}
