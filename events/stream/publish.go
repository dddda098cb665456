package stream

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/seatd/seatd/events"
)

// Msg is one message for a stream. ID becomes its Nats-Msg-Id: JetStream
// stores a message with an ID it has seen within the dedupe window only
// once, which is what makes a re-publish (a retry, the requeuer, the
// relay after a crash) harmless.
type Msg struct {
	Subject string
	ID      string
	Data    []byte
	Header  nats.Header // optional, e.g. trace context
}

// RequestMsg is the message that carries r to the workers, under r's id.
// It fails only when r cannot be encoded.
func RequestMsg(r events.Request) (Msg, error) {
	data, err := r.Encode()
	if err != nil {
		return Msg{}, err
	}
	return Msg{Subject: events.RequestsSubject, ID: r.ID, Data: data, Header: nats.Header{}}, nil
}

func (m Msg) nats() *nats.Msg {
	nm := nats.NewMsg(m.Subject)
	nm.Data = m.Data
	for k, v := range m.Header {
		nm.Header[k] = v
	}
	return nm
}

// Window is how many publishes PublishAll keeps awaiting their ack: enough
// to keep the connection busy, below the connection's limit of pending
// async publishes (see config.ConnectNATS).
const Window = 512

// AckTimeout bounds the wait for JetStream to store one message.
const AckTimeout = 30 * time.Second

// Publish publishes one message and waits until JetStream has stored it.
// It is PublishAll of one, so a single publish gets the same retry.
func Publish(ctx context.Context, js jetstream.JetStream, m Msg) (*jetstream.PubAck, error) {
	var ack *jetstream.PubAck
	err := PublishAll(ctx, js, []Msg{m}, func(_ int, a *jetstream.PubAck) { ack = a })
	return ack, err
}

// PublishAll is the one way seatd puts messages on its streams: the
// ingress (a request, a batch), the import, the outbox relay, the
// requeuer and dead-letter replays all use it. It publishes msgs
// pipelined, at most Window awaiting their ack, and calls acked (when not
// nil) for each message JetStream has stored, in order. A publish whose
// asynchronous attempt fails is tried once more synchronously under the
// same Nats-Msg-Id, which rides out a stream leader election and is
// harmless if the first attempt landed. It stops at the first message that
// cannot be stored: the ones before it are stored, the ones after it are
// not published.
func PublishAll(ctx context.Context, js jetstream.JetStream, msgs []Msg, acked func(i int, ack *jetstream.PubAck)) error {
	type sent struct {
		i int
		f jetstream.PubAckFuture
	}
	window := make([]sent, 0, min(Window, len(msgs)))
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	await := func(s sent) error {
		m := msgs[s.i]
		timer.Reset(AckTimeout)
		var ack *jetstream.PubAck
		select {
		case ack = <-s.f.Ok():
		case err := <-s.f.Err():
			a, err2 := js.PublishMsg(ctx, m.nats(), jetstream.WithMsgID(m.ID))
			if err2 != nil {
				return fmt.Errorf("publish %s: %w", m.ID, errors.Join(err, err2))
			}
			ack = a
		case <-timer.C:
			return fmt.Errorf("publish %s: no ack from JetStream within %s", m.ID, AckTimeout)
		case <-ctx.Done():
			return ctx.Err()
		}
		if acked != nil {
			acked(s.i, ack)
		}
		return nil
	}
	for i, m := range msgs {
		f, err := js.PublishMsgAsync(m.nats(), jetstream.WithMsgID(m.ID))
		if err != nil {
			return fmt.Errorf("publish %s: %w", m.ID, err)
		}
		window = append(window, sent{i, f})
		if len(window) == Window {
			if err := await(window[0]); err != nil {
				return err
			}
			window = window[1:]
		}
	}
	for _, s := range window {
		if err := await(s); err != nil {
			return err
		}
	}
	return nil
}
