// Package status reads how seatd's pipeline is doing from JetStream and
// Postgres: the streams and their consumers' backlogs, the ledger's
// queued requests, the outbox, dead letters, mail and the fullest pools.
// seatd's /metrics reports part of it on every scrape (Pipeline); `seatctl
// status` prints all of it and judges whether it is healthy (Gather,
// Judge).
package status

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/seatd/seatd/events"
	"github.com/seatd/seatd/storage"
	"github.com/seatd/seatd/telemetry"
)

// streams are the ones an operator watches, in the order a request
// passes them.
var streams = []string{events.RequestsStream, events.MailStream, events.SeatEventsStream, events.DeadLetterStream}

// Pipeline reads the streams, their consumers, the ledger's queued
// requests and the outbox. It is cheap enough for every scrape.
func Pipeline(ctx context.Context, db *storage.DB, js jetstream.JetStream) (telemetry.Pipeline, error) {
	var p telemetry.Pipeline
	for _, name := range streams {
		st, err := streamState(ctx, js, name)
		if err != nil {
			return p, err
		}
		p.Streams = append(p.Streams, st)
	}
	b, err := db.Backlog(ctx)
	if err != nil {
		return p, fmt.Errorf("ledger and outbox: %w", err)
	}
	p.QueuedRequests, p.OldestQueued, p.OutboxDepth, p.OldestOutbox = b.QueuedRequests, b.OldestQueued, b.OutboxDepth, b.OldestOutbox
	return p, nil
}

func streamState(ctx context.Context, js jetstream.JetStream, name string) (telemetry.StreamState, error) {
	st := telemetry.StreamState{Name: name}
	s, err := js.Stream(ctx, name)
	if err != nil {
		return st, fmt.Errorf("stream %s: %w", name, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		return st, fmt.Errorf("stream %s: %w", name, err)
	}
	st.Messages = info.State.Msgs
	if st.Messages > 0 {
		st.Oldest = info.State.FirstTime.UTC()
	}
	lister := s.ListConsumers(ctx)
	for ci := range lister.Info() {
		st.Consumers = append(st.Consumers, telemetry.ConsumerState{Name: ci.Name, Pending: ci.NumPending,
			AckPending: ci.NumAckPending, Redelivered: ci.NumRedelivered})
	}
	if err := lister.Err(); err != nil && !errors.Is(err, jetstream.ErrEndOfData) {
		return st, fmt.Errorf("stream %s consumers: %w", name, err)
	}
	sort.Slice(st.Consumers, func(i, j int) bool { return st.Consumers[i].Name < st.Consumers[j].Name })
	return st, nil
}

// Report is everything `seatctl status` shows.
type Report struct {
	CheckedAt time.Time `json:"checked_at"`
	Healthy   bool      `json:"healthy"`
	Problems  []string  `json:"problems"`
	telemetry.Pipeline
	// DeadLetters is the number of messages in SEATD_DLQ.
	DeadLetters uint64 `json:"dead_letters"`
	// MailBacklog is invitations waiting for the mailer: mail requests not
	// yet delivered plus those in progress or waiting for a retry.
	MailBacklog uint64 `json:"mail_backlog"`
	// Invitations counts invitations by delivery state.
	Invitations map[string]int64    `json:"invitations"`
	Pools       []storage.PoolUsage `json:"fullest_pools"`
}

// Gather reads the report, with up to pools of the fullest pools.
func Gather(ctx context.Context, db *storage.DB, js jetstream.JetStream, pools int) (Report, error) {
	r := Report{CheckedAt: time.Now().UTC(), Problems: []string{}}
	var err error
	if r.Pipeline, err = Pipeline(ctx, db, js); err != nil {
		return r, err
	}
	for _, s := range r.Streams {
		switch s.Name {
		case events.DeadLetterStream:
			r.DeadLetters = s.Messages
		case events.MailStream:
			for _, c := range s.Consumers {
				if c.Name == events.MailerConsumer {
					r.MailBacklog = c.Pending + uint64(c.AckPending)
				}
			}
		}
	}
	if r.Invitations, err = db.InvitationStates(ctx); err != nil {
		return r, fmt.Errorf("invitations: %w", err)
	}
	if r.Pools, err = db.FullestPools(ctx, pools); err != nil {
		return r, fmt.Errorf("pools: %w", err)
	}
	return r, nil
}

// Thresholds say when the pipeline is unhealthy.
type Thresholds struct {
	// MaxQueuedAge: the oldest request accepted and not yet applied may
	// be this old. Older means workers are down, stuck or far behind.
	MaxQueuedAge time.Duration
	// MaxOutboxAge: the oldest outbox row may be this old. Older means
	// the relay is not publishing.
	MaxOutboxAge time.Duration
	// MaxMailAge: the oldest unacknowledged mail request may be this old.
	// Older means the mailer is down or the SMTP server has been failing.
	MaxMailAge time.Duration
}

// DefaultThresholds are seatctl status's defaults.
var DefaultThresholds = Thresholds{MaxQueuedAge: 2 * time.Minute, MaxOutboxAge: time.Minute, MaxMailAge: 15 * time.Minute}

// Judge sets Healthy and Problems. Dead letters always make the pipeline
// unhealthy: each is a request that needs an operator.
func (r *Report) Judge(th Thresholds) {
	r.Problems = []string{}
	now := r.CheckedAt
	tooOld := func(t time.Time, limit time.Duration) bool { return !t.IsZero() && now.Sub(t) > limit }
	if r.DeadLetters > 0 {
		r.Problems = append(r.Problems, fmt.Sprintf("%d dead letter(s) in %s: see seatctl dlq list", r.DeadLetters, events.DeadLetterStream))
	}
	if tooOld(r.OldestQueued, th.MaxQueuedAge) {
		r.Problems = append(r.Problems, fmt.Sprintf("oldest queued request is %s old (limit %s): are the workers running?",
			age(now, r.OldestQueued), th.MaxQueuedAge))
	}
	if tooOld(r.OldestOutbox, th.MaxOutboxAge) {
		r.Problems = append(r.Problems, fmt.Sprintf("oldest outbox row is %s old (limit %s): is the relay (seatd worker) running?",
			age(now, r.OldestOutbox), th.MaxOutboxAge))
	}
	for _, s := range r.Streams {
		if s.Name == events.MailStream && tooOld(s.Oldest, th.MaxMailAge) {
			r.Problems = append(r.Problems, fmt.Sprintf("oldest undelivered invitation is %s old (limit %s): is the mailer running, is SMTP failing?",
				age(now, s.Oldest), th.MaxMailAge))
		}
	}
	r.Healthy = len(r.Problems) == 0
}

func age(now, t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return now.Sub(t).Round(time.Second).String()
}

// WriteTable prints the report for a person. It returns the first
// write error (a closed pipe, a full disk); after one it writes no more.
func (r Report) WriteTable(w io.Writer) error {
	var err error
	printf := func(w io.Writer, format string, a ...any) {
		if err == nil {
			_, err = fmt.Fprintf(w, format, a...)
		}
	}
	flush := func(tw *tabwriter.Writer) {
		if ferr := tw.Flush(); err == nil {
			err = ferr
		}
	}
	verdict := "HEALTHY"
	if !r.Healthy {
		verdict = "UNHEALTHY"
	}
	now := r.CheckedAt
	printf(w, "seatd pipeline: %s (checked %s)\n", verdict, now.Format(time.RFC3339))
	for _, p := range r.Problems {
		printf(w, "  ! %s\n", p)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	printf(tw, "\nSTREAM\tMESSAGES\tOLDEST\n")
	for _, s := range r.Streams {
		printf(tw, "%s\t%d\t%s\n", s.Name, s.Messages, age(now, s.Oldest))
	}
	printf(tw, "\nCONSUMER\tPENDING\tACK PENDING\tREDELIVERED\n")
	for _, s := range r.Streams {
		for _, c := range s.Consumers {
			printf(tw, "%s/%s\t%d\t%d\t%d\n", s.Name, c.Name, c.Pending, c.AckPending, c.Redelivered)
		}
	}
	flush(tw)
	states := make([]string, 0, len(r.Invitations))
	for _, k := range []string{"queued", "sending", "sent", "failed", "cancelled"} {
		states = append(states, fmt.Sprintf("%s %d", k, r.Invitations[k]))
	}
	printf(w, "\nqueued requests: %d (oldest %s)\n", r.QueuedRequests, age(now, r.OldestQueued))
	printf(w, "outbox:          %d (oldest %s)\n", r.OutboxDepth, age(now, r.OldestOutbox))
	printf(w, "dead letters:    %d\n", r.DeadLetters)
	printf(w, "mail backlog:    %d (invitations: %s)\n", r.MailBacklog, strings.Join(states, ", "))
	if len(r.Pools) == 0 {
		return err
	}
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	printf(tw, "\nFULLEST POOLS\tKIND\tPRODUCT\tUSED\tSEATS\tFULL\n")
	for _, p := range r.Pools {
		printf(tw, "%s\t%s\t%s\t%d\t%d\t%d%%\n", p.ID, p.Kind, p.Product, p.SeatsUsed, p.Seats, 100*p.SeatsUsed/p.Seats)
	}
	flush(tw)
	return err
}
