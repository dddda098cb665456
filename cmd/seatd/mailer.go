package main

import (
	"context"

	"github.com/seatd/seatd/cmd/internal/config"
	"github.com/seatd/seatd/storage"
)

// mailer builds the mailer role. TODO(lead): wire mailer.New once it lands.
func (m *Main) mailer(db *storage.DB, nc *config.NATS, keys storage.Keys) (func(context.Context) error, error) {
	return func(ctx context.Context) error { <-ctx.Done(); return nil }, nil
}
