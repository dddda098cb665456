package ingress

import (
	"context"
	"crypto/sha256"
	"sync"
	"time"
)

// sessionCacheTTL is how long the ingress trusts a credential (a session
// or an organization access token) it looked up without asking Postgres
// again. One that expires stops working at its expiry exactly (every hit
// checks it); one deleted or revoked in the database keeps working on this
// replica for at most this long.
const sessionCacheTTL = time.Second

// maxCachedSessions bounds each cache; past it the cache starts over.
const maxCachedSessions = 10000

// tokenCache remembers successful authentications of one kind of
// credential briefly, so a busy client costs one lookup per second instead
// of one per request. Failures are never cached: a credential created a
// moment ago works at once.
type tokenCache[T any] struct {
	lookup func(context.Context, string) (T, error)
	live   func(T, time.Time) bool // not expired at the given time

	mu sync.Mutex
	m  map[[32]byte]cached[T]
}

type cached[T any] struct {
	v       T
	fetched time.Time
}

func newTokenCache[T any](lookup func(context.Context, string) (T, error), live func(T, time.Time) bool) *tokenCache[T] {
	return &tokenCache[T]{lookup: lookup, live: live}
}

func (c *tokenCache[T]) authenticate(ctx context.Context, token string) (T, error) {
	// Keyed by the token's hash: the cache holds no token.
	key := sha256.Sum256([]byte(token))
	now := time.Now()
	c.mu.Lock()
	e, ok := c.m[key]
	c.mu.Unlock()
	if ok && now.Sub(e.fetched) < sessionCacheTTL && c.live(e.v, now) {
		return e.v, nil
	}
	v, err := c.lookup(ctx, token)
	if err != nil {
		c.mu.Lock()
		delete(c.m, key)
		c.mu.Unlock()
		return v, err
	}
	c.mu.Lock()
	if c.m == nil || len(c.m) >= maxCachedSessions {
		c.m = map[[32]byte]cached[T]{}
	}
	c.m[key] = cached[T]{v: v, fetched: now}
	c.mu.Unlock()
	return v, nil
}
