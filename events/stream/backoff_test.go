package stream

import (
	"testing"
	"time"
)

func TestBackoffGrowsAndCaps(t *testing.T) {
	base, max := 250*time.Millisecond, 30*time.Second
	want := []time.Duration{250 * time.Millisecond, 500 * time.Millisecond, time.Second, 2 * time.Second}
	for i, w := range want {
		if got := Backoff(base, max, uint64(i+1)); got != w {
			t.Errorf("delivery %d: %s, want %s", i+1, got, w)
		}
	}
	if got := Backoff(base, max, 1000); got != max {
		t.Errorf("delivery 1000: %s, want the cap %s", got, max)
	}
}
