package storage_test

import (
	"bytes"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/seatd/seatd/events"
	"github.com/seatd/seatd/storage"
)

// TestSubmitGroupIdempotencyUnderConcurrency: many callers at once, most of
// them racing with one Idempotency-Key (some with another body), their
// rows written by the same statements. Per caller and key exactly one
// request is recorded; every racer with the winner's body replays it, every
// racer with another body gets the conflict; requests without a key are
// all recorded; keys of another caller are separate.
func TestSubmitGroupIdempotencyUnderConcurrency(t *testing.T) {
	t.Parallel()
	db := openDB(t)
	ctx := t.Context()
	g := db.NewSubmitGroup(0)
	defer g.Close()

	// Hold the ledger so the racers pile up behind the first statement and
	// the next one carries them all.
	hold, err := db.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := hold.Exec(ctx, `LOCK TABLE requests IN SHARE ROW EXCLUSIVE MODE`); err != nil {
		t.Fatal(err)
	}

	callerA, callerB := uuid.NewString(), uuid.NewString()
	type call struct {
		caller, key string
		body        []byte
		rec         storage.Record
		err         error
		id          string
	}
	var calls []*call
	for i := range 60 {
		c := &call{caller: callerA, key: "k", body: []byte("same")}
		switch i % 10 {
		case 3:
			c.body = []byte("other")
		case 5:
			c.key = ""
		case 7:
			c.caller = callerB
		}
		calls = append(calls, c)
	}
	var wg sync.WaitGroup
	for _, c := range calls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.id = uuid.NewString()
			r := events.Request{ID: c.id, Op: events.OpAssign, CustomerID: c.caller, SubmittedAt: time.Now().UTC()}
			c.rec, c.err = g.Submit(ctx, storage.Submission{Request: r, IdempotencyKey: c.key, BodyHash: c.body})
		}()
	}
	time.Sleep(200 * time.Millisecond) // let them queue
	if err := hold.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	wg.Wait()

	var rows int
	if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM requests`).Scan(&rows); err != nil {
		t.Fatal(err)
	}
	if rows != 6+1+1 { // 6 without a key, one per caller with "k"
		t.Errorf("%d ledger rows, want 8", rows)
	}
	for _, caller := range []string{callerA, callerB} {
		var winner string
		var winnerBody []byte
		if err := db.Pool.QueryRow(ctx, `SELECT id, body_hash FROM requests WHERE caller = $1 AND idempotency_key = 'k'`, caller).
			Scan(&winner, &winnerBody); err != nil {
			t.Fatalf("caller %s: %v", caller, err)
		}
		recorded := 0
		for _, c := range calls {
			if c.caller != caller || c.key != "k" {
				continue
			}
			switch {
			case c.id == winner:
				recorded++
				if c.err != nil || c.rec.Replayed || c.rec.ID != winner {
					t.Errorf("winner: %+v %v", c.rec, c.err)
				}
			case bytes.Equal(c.body, winnerBody):
				if c.err != nil || !c.rec.Replayed || c.rec.ID != winner {
					t.Errorf("racer with the same body: %+v %v, want a replay of %s", c.rec, c.err, winner)
				}
			default:
				if events.ErrorCode(c.err) != events.CodeConflict {
					t.Errorf("racer with another body: %+v %v, want conflict", c.rec, c.err)
				}
			}
		}
		if recorded != 1 {
			t.Errorf("caller %s: %d winners", caller, recorded)
		}
	}
	for _, c := range calls {
		if c.key == "" && (c.err != nil || c.rec.Replayed || c.rec.ID != c.id) {
			t.Errorf("request without a key: %+v %v", c.rec, c.err)
		}
	}

	g.Close()
	r := events.Request{ID: uuid.NewString(), Op: events.OpAssign, CustomerID: callerA, SubmittedAt: time.Now().UTC()}
	if _, err := g.Submit(ctx, storage.Submission{Request: r}); err == nil {
		t.Error("Submit after Close succeeded")
	}
}
