package storage

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/seatd/seatd/events"
)

// SubmitGroup records requests as queued like Submit, but writes the rows
// of concurrent callers with one INSERT (group commit): while one
// statement is in flight the next callers queue up, and the next statement
// takes them all. A lone caller waits for no timer, so an idle server
// answers as fast as with Submit; a busy one commits once per group
// instead of once per request.
//
// Only requests without an Idempotency-Key are grouped. A keyed request
// goes through Submit, which takes the key's lock and checks the key
// against batches too (keys are scoped per account across endpoints);
// keyed writes are the rarer, retrying kind, and their semantics stay in
// one place.
type SubmitGroup struct {
	db   *DB
	max  int
	in   chan *submitCall
	done chan struct{}

	closeOnce sync.Once
	mu        sync.RWMutex
	closed    bool
}

type submitCall struct {
	s       Submission
	payload []byte
	err     error
	ready   chan struct{}
}

var errSubmitClosed = errors.New("submit: shutting down")

// NewSubmitGroup starts a group committer writing at most max rows per
// statement (default 256). Close stops it.
func (db *DB) NewSubmitGroup(max int) *SubmitGroup {
	if max <= 0 {
		max = 256
	}
	g := &SubmitGroup{db: db, max: max, in: make(chan *submitCall, max), done: make(chan struct{})}
	go g.run()
	return g
}

// Close lets queued calls finish and stops the committer. Submit after
// Close fails.
func (g *SubmitGroup) Close() {
	g.closeOnce.Do(func() {
		g.mu.Lock()
		g.closed = true
		close(g.in)
		g.mu.Unlock()
		<-g.done
	})
}

// Submit records s as Submit does.
func (g *SubmitGroup) Submit(ctx context.Context, s Submission) (Record, error) {
	if s.IdempotencyKey != "" {
		return g.db.Submit(ctx, s)
	}
	payload, err := events.Marshal(s.Request)
	if err != nil {
		return Record{}, err
	}
	c := &submitCall{s: s, payload: payload, ready: make(chan struct{})}
	g.mu.RLock()
	if g.closed {
		g.mu.RUnlock()
		return Record{}, errSubmitClosed
	}
	select {
	case g.in <- c:
	case <-ctx.Done():
		g.mu.RUnlock()
		return Record{}, ctx.Err()
	}
	g.mu.RUnlock()
	// Wait for the statement even if the caller leaves: once queued, the
	// row may be written, and the caller's goroutine must then publish it
	// or mark it failed, never leave it behind.
	<-c.ready
	if c.err != nil {
		return Record{}, c.err
	}
	r := s.Request
	return Record{ID: r.ID, Op: r.Op, Status: RequestQueued, CreatedAt: r.SubmittedAt}, nil
}

func (g *SubmitGroup) run() {
	defer close(g.done)
	batch := make([]*submitCall, 0, g.max)
	for c := range g.in {
		batch = append(batch[:0], c)
	more:
		for len(batch) < g.max {
			select {
			case c, ok := <-g.in:
				if !ok {
					break more
				}
				batch = append(batch, c)
			default:
				break more
			}
		}
		g.flush(batch)
	}
}

func (g *SubmitGroup) flush(batch []*submitCall) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	n := len(batch)
	ids, ops, callers, payloads, created := make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]time.Time, n)
	for i, c := range batch {
		r := c.s.Request
		ids[i], ops[i], callers[i], payloads[i], created[i] = r.ID, string(r.Op), Caller(r), string(c.payload), r.SubmittedAt
	}
	rows, err := g.db.Pool.Query(ctx, `INSERT INTO requests (id, op, caller, payload, created_at)
		SELECT u.id::uuid, u.op, u.caller, u.payload::json, u.created
		FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::timestamptz[]) AS u(id, op, caller, payload, created)
		ON CONFLICT DO NOTHING
		RETURNING id::text`, ids, ops, callers, payloads, created)
	inserted := map[string]bool{}
	if err == nil {
		for rows.Next() {
			var id string
			if err = rows.Scan(&id); err != nil {
				break
			}
			inserted[id] = true
		}
		rows.Close()
		if err == nil {
			err = rows.Err()
		}
	}
	for _, c := range batch {
		switch {
		case err != nil:
			c.err = fmt.Errorf("submit: %w", err)
		case !inserted[c.s.Request.ID]:
			c.err = fmt.Errorf("submit: request id %s already exists", c.s.Request.ID)
		}
		close(c.ready)
	}
}
