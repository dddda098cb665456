package ingress

import (
	"context"
	"crypto/sha256"
	"sync"
	"time"

	"github.com/seatd/seatd/storage"
)

// sessionCacheTTL is how long the ingress trusts a session it looked up
// without asking Postgres again. A session that expires stops working at
// its expiry exactly (every hit checks it); one deleted from the database
// keeps working on this replica for at most this long.
const sessionCacheTTL = time.Second

// maxCachedSessions bounds the cache; past it the cache starts over.
const maxCachedSessions = 10000

// sessionCache remembers successful authentications briefly, so a busy
// client costs one session lookup per second instead of one per request.
// Failures are never cached: a session created a moment ago works at once.
type sessionCache struct {
	mu sync.Mutex
	m  map[[32]byte]cachedSession
}

type cachedSession struct {
	sess    storage.Session
	fetched time.Time
}

func (c *sessionCache) authenticate(ctx context.Context, db *storage.DB, token string) (storage.Session, error) {
	// Keyed by the token's hash, as Postgres keys it: the cache holds no
	// token.
	key := sha256.Sum256([]byte(token))
	now := time.Now()
	c.mu.Lock()
	e, ok := c.m[key]
	c.mu.Unlock()
	if ok && now.Sub(e.fetched) < sessionCacheTTL && now.Before(e.sess.ExpiresAt) {
		return e.sess, nil
	}
	sess, err := db.Authenticate(ctx, token)
	if err != nil {
		c.mu.Lock()
		delete(c.m, key)
		c.mu.Unlock()
		return sess, err
	}
	c.mu.Lock()
	if c.m == nil || len(c.m) >= maxCachedSessions {
		c.m = map[[32]byte]cachedSession{}
	}
	c.m[key] = cachedSession{sess: sess, fetched: now}
	c.mu.Unlock()
	return sess, nil
}
