package stream

import "time"

// Backoff is the retry delay after the n-th failed delivery of a message:
// base·2^(n-1), capped at max. The worker and the mailer both use it.
func Backoff(base, max time.Duration, n uint64) time.Duration {
	d := base
	for i := uint64(1); i < n && d < max; i++ {
		d *= 2
	}
	return min(d, max)
}
