package storage

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// DB is a handle on seatd's database.
type DB struct {
	Pool *pgxpool.Pool
}

// Open connects to url. It does not migrate; call Migrate first.
func Open(ctx context.Context, url string) (*DB, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("database url: %w", err)
	}
	// pgxpool's default is max(4, cores): too few when one process runs
	// the worker, relay, ingress and a mailer that holds a connection per
	// delivery in flight. pool_max_conns in the URL still wins.
	if !strings.Contains(url, "pool_max_conns") {
		cfg.MaxConns = 20
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("database: %w", err)
	}
	return &DB{Pool: pool}, nil
}

// Close releases every connection.
func (db *DB) Close() { db.Pool.Close() }

// inTx runs fn in a transaction and commits it when fn returns nil.
func (db *DB) inTx(ctx context.Context, fn func(pgx.Tx) error) error {
	return pgx.BeginFunc(ctx, db.Pool, fn)
}

// IsTransient reports whether err is worth retrying: a serialization
// failure, a deadlock, a lost or refused connection, a server shutting
// down. Everything else (constraint violations, bad data) fails the same
// way every time.
func IsTransient(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code[:2] {
		case "40", // serialization_failure, deadlock_detected
			"08", // connection exceptions
			"53", // insufficient resources
			"57": // operator intervention: admin_shutdown, cannot_connect_now
			return true
		}
		return false
	}
	// Errors without a Postgres code come from the connection: refused,
	// reset, timed out.
	return pgconn.SafeToRetry(err) || isNetErr(err)
}
