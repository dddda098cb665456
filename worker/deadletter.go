package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/seatd/seatd/events"
	"github.com/seatd/seatd/events/stream"
	"github.com/seatd/seatd/storage"
)

// DeadLetters is the operator's view of the dead-letter stream.
type DeadLetters struct {
	DB *storage.DB
	JS jetstream.JetStream
}

// DeadLetterEntry is one dead letter and where it sits in the stream.
type DeadLetterEntry struct {
	Seq        uint64          `json:"id"`
	RequestID  string          `json:"request_id,omitempty"`
	Reason     string          `json:"reason"`
	Deliveries uint64          `json:"deliveries"`
	FailedAt   time.Time       `json:"failed_at"`
	Request    json.RawMessage `json:"request,omitempty"` // the original message, when it is JSON
	Raw        string          `json:"raw,omitempty"`     // the original message otherwise
}

// List returns every dead letter, oldest first.
func (d *DeadLetters) List(ctx context.Context) ([]DeadLetterEntry, error) {
	s, err := d.JS.Stream(ctx, events.DeadLetterStream)
	if err != nil {
		return nil, err
	}
	info, err := s.Info(ctx)
	if err != nil {
		return nil, err
	}
	out := []DeadLetterEntry{}
	if info.State.Msgs == 0 {
		return out, nil
	}
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq; seq++ {
		e, err := d.get(ctx, s, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue // deleted after a replay
		}
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, nil
}

// Get returns the dead letter with stream sequence seq.
func (d *DeadLetters) Get(ctx context.Context, seq uint64) (DeadLetterEntry, error) {
	s, err := d.JS.Stream(ctx, events.DeadLetterStream)
	if err != nil {
		return DeadLetterEntry{}, err
	}
	e, err := d.get(ctx, s, seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return DeadLetterEntry{}, fmt.Errorf("no dead letter with id %d", seq)
	}
	return e, err
}

func (d *DeadLetters) get(ctx context.Context, s jetstream.Stream, seq uint64) (DeadLetterEntry, error) {
	m, err := s.GetMsg(ctx, seq)
	if err != nil {
		return DeadLetterEntry{}, err
	}
	var dl events.DeadLetter
	if err := json.Unmarshal(m.Data, &dl); err != nil {
		return DeadLetterEntry{Seq: seq, Reason: "undecodable dead letter: " + err.Error()}, nil
	}
	e := DeadLetterEntry{Seq: seq, RequestID: dl.RequestID, Reason: dl.Reason, Deliveries: dl.Deliveries, FailedAt: dl.FailedAt}
	if json.Valid(dl.Request) {
		e.Request = dl.Request
	} else {
		e.Raw = string(dl.Request)
	}
	return e, nil
}

// Replay re-publishes a dead letter with its original request id and
// removes it from the dead-letter stream. A request that was in fact
// applied keeps its outcome: the ledger only re-opens requests whose
// recorded outcome is the dead-lettering itself, so nothing is applied
// twice.
func (d *DeadLetters) Replay(ctx context.Context, seq uint64) (DeadLetterEntry, error) {
	s, err := d.JS.Stream(ctx, events.DeadLetterStream)
	if err != nil {
		return DeadLetterEntry{}, err
	}
	m, err := s.GetMsg(ctx, seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return DeadLetterEntry{}, fmt.Errorf("no dead letter with id %d", seq)
	}
	if err != nil {
		return DeadLetterEntry{}, err
	}
	var dl events.DeadLetter
	if err := json.Unmarshal(m.Data, &dl); err != nil {
		return DeadLetterEntry{}, fmt.Errorf("dead letter %d is undecodable: %w", seq, err)
	}
	entry, err := d.get(ctx, s, seq)
	if err != nil {
		return DeadLetterEntry{}, err
	}
	if dl.RequestID != "" {
		if err := d.DB.Reopen(ctx, dl.RequestID); err != nil {
			return DeadLetterEntry{}, err
		}
	}
	// A fresh Nats-Msg-Id: the original one may still be inside the dedupe
	// window. The ledger, keyed by request id, keeps the effect single.
	if _, err := stream.Publish(ctx, d.JS, stream.Msg{Subject: events.RequestsSubject, Data: dl.Request,
		ID: fmt.Sprintf("replay-%s-%d", dl.RequestID, seq)}); err != nil {
		return DeadLetterEntry{}, err
	}
	if err := s.DeleteMsg(ctx, seq); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
		return DeadLetterEntry{}, err
	}
	return entry, nil
}

// Purge deletes every dead letter and returns how many there were.
func (d *DeadLetters) Purge(ctx context.Context) (uint64, error) {
	s, err := d.JS.Stream(ctx, events.DeadLetterStream)
	if err != nil {
		return 0, err
	}
	info, err := s.Info(ctx)
	if err != nil {
		return 0, err
	}
	return info.State.Msgs, s.Purge(ctx)
}
