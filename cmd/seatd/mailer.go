package main

import (
	"context"

	"github.com/seatd/seatd/cmd/internal/config"
	"github.com/seatd/seatd/invite"
	"github.com/seatd/seatd/mailer"
	"github.com/seatd/seatd/storage"
)

// mailer builds the mailer role: SMTP_URL's server, or the mail drop.
func (m *Main) mailer(db *storage.DB, nc *config.NATS, keys storage.Keys, tmpl *invite.Templates) (func(context.Context) error, error) {
	sender, desc, err := mailer.NewSender(m.Config.SMTPURL, m.Config.DataDir, m.Log)
	if err != nil {
		return nil, err
	}
	m.Log.Info("mailer sends through " + desc)
	mm := mailer.New(mailer.Config{DB: db, JS: nc.JS, Sender: sender, Keys: keys,
		PublicURL: m.Config.PublicURL, From: m.Config.MailFrom, Templates: tmpl, Log: m.Log,
		RetryBase: m.Config.MailRetryBase, RetryMax: m.Config.MailRetryMax, MaxAttempts: m.Config.MailMaxAttempts})
	return mm.Run, nil
}
