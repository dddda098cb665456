package main

import (
	"context"

	"github.com/seatd/seatd/cmd/internal/config"
	"github.com/seatd/seatd/storage"
	"github.com/seatd/seatd/webhook"
)

// webhooks builds the webhooks role: the seat-event consumer and the
// dispatcher of webhook deliveries.
func (m *Main) webhooks(db *storage.DB, nc *config.NATS, keys storage.Keys) (func(context.Context) error, error) {
	c := &m.Config
	r, err := webhook.New(webhook.Config{DB: db, JS: nc.JS, Keys: keys, Log: m.Log,
		Timeout: c.WebhookTimeout, RetryBase: c.WebhookRetryBase, RetryMax: c.WebhookRetryMax,
		MaxAttempts: c.WebhookMaxAttempts, DisableAfter: c.WebhookDisableAfter, Concurrency: c.WebhookConcurrency})
	if err != nil {
		return nil, err
	}
	return r.Run, nil
}
