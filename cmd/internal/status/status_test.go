package status

import (
	"strings"
	"testing"
	"time"

	"github.com/seatd/seatd/events"
	"github.com/seatd/seatd/telemetry"
)

func TestJudge(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	ago := func(d time.Duration) time.Time { return now.Add(-d) }
	mail := func(oldest time.Time) telemetry.StreamState {
		return telemetry.StreamState{Name: events.MailStream, Messages: 1, Oldest: oldest}
	}
	cases := []struct {
		name string
		r    Report
		want []string // substrings of the problems, in order; none: healthy
	}{
		{"empty", Report{}, nil},
		{"young backlog", Report{Pipeline: telemetry.Pipeline{OldestQueued: ago(time.Minute), OldestOutbox: ago(30 * time.Second),
			Streams: []telemetry.StreamState{mail(ago(10 * time.Minute))}}}, nil},
		{"dead letter", Report{DeadLetters: 2}, []string{"2 dead letter(s)"}},
		{"old queued request", Report{Pipeline: telemetry.Pipeline{OldestQueued: ago(3 * time.Minute)}}, []string{"oldest queued request is 3m0s old"}},
		{"stuck relay", Report{Pipeline: telemetry.Pipeline{OldestOutbox: ago(2 * time.Minute)}}, []string{"outbox"}},
		{"stuck mail", Report{Pipeline: telemetry.Pipeline{Streams: []telemetry.StreamState{mail(ago(time.Hour))}}}, []string{"invitation is 1h0m0s old"}},
		{"old events are fine", Report{Pipeline: telemetry.Pipeline{Streams: []telemetry.StreamState{{Name: events.SeatEventsStream, Messages: 9, Oldest: ago(48 * time.Hour)}}}}, nil},
		{"everything", Report{DeadLetters: 1, Pipeline: telemetry.Pipeline{OldestQueued: ago(time.Hour), OldestOutbox: ago(time.Hour),
			Streams: []telemetry.StreamState{mail(ago(time.Hour))}}}, []string{"dead letter", "queued", "outbox", "invitation"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.r.CheckedAt = now
			c.r.Judge(DefaultThresholds)
			if c.r.Healthy != (len(c.want) == 0) || len(c.r.Problems) != len(c.want) {
				t.Fatalf("healthy %v, problems %q; want %q", c.r.Healthy, c.r.Problems, c.want)
			}
			for i, w := range c.want {
				if !strings.Contains(c.r.Problems[i], w) {
					t.Errorf("problem %d %q lacks %q", i, c.r.Problems[i], w)
				}
			}
		})
	}
}
