package ingress

import (
	"sync"
	"time"
)

// limiter is a token bucket per key (a session, or a client address for the
// unauthenticated claim). Idle buckets are dropped so memory stays bounded.
type limiter struct {
	rate    float64 // tokens per second; 0 disables limiting
	burst   float64
	mu      sync.Mutex
	buckets map[string]*bucket
	swept   time.Time
}

type bucket struct {
	tokens float64
	last   time.Time
}

func newLimiter(rate float64, burst int) *limiter {
	if burst <= 0 {
		burst = max(1, int(rate*2))
	}
	return &limiter{rate: rate, burst: float64(burst), buckets: map[string]*bucket{}}
}

// allow takes a token for key, or says how long until one is available.
func (l *limiter) allow(key string) (bool, time.Duration) {
	return l.take(key, true)
}

// blocked reports, without taking anything, whether key's bucket is empty.
func (l *limiter) blocked(key string) (bool, time.Duration) {
	ok, retry := l.take(key, false)
	return !ok, retry
}

// charge takes a token for key if there is one: the cost of a failure.
func (l *limiter) charge(key string) { l.take(key, true) }

func (l *limiter) take(key string, consume bool) (bool, time.Duration) {
	if l.rate <= 0 {
		return true, 0
	}
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.swept) > time.Minute {
		for k, b := range l.buckets {
			if now.Sub(b.last).Seconds()*l.rate >= l.burst {
				delete(l.buckets, k)
			}
		}
		l.swept = now
	}
	b, ok := l.buckets[key]
	if !ok {
		b = &bucket{tokens: l.burst, last: now}
		l.buckets[key] = b
	}
	b.tokens = min(l.burst, b.tokens+now.Sub(b.last).Seconds()*l.rate)
	b.last = now
	if b.tokens >= 1 {
		if consume {
			b.tokens--
		}
		return true, 0
	}
	return false, time.Duration((1 - b.tokens) / l.rate * float64(time.Second))
}
