package mailer

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
)

// Sender delivers one message. A nil error means the message was handed
// over for good (an SMTP server accepted it, or it is on disk); an error
// for which IsPermanent is true means it never will be.
type Sender interface {
	Send(ctx context.Context, m *Message) error
}

// MailDrop is the development Sender: it writes each message as an RFC 5322
// .eml file, <Dir>/<invitation id>.eml, instead of sending it. A retry of
// the same invitation replaces its file, and a reader never sees a half
// written one. Files are readable by the owner only: they hold the claim
// token.
type MailDrop struct {
	Dir string
	Log *slog.Logger
}

// NewMailDrop creates dir if needed.
func NewMailDrop(dir string, log *slog.Logger) (*MailDrop, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("mail drop: %w", err)
	}
	if log == nil {
		log = slog.Default()
	}
	return &MailDrop{Dir: dir, Log: log}, nil
}

// Send writes m to its file and logs one line naming the recipient, the
// file and the claim URL, so a developer can follow the link from the log.
func (d *MailDrop) Send(ctx context.Context, m *Message) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	msg, err := m.build()
	if err != nil {
		return err
	}
	name := fileName(m)
	tmp, err := os.CreateTemp(d.Dir, "."+name+".*.tmp")
	if err != nil {
		return fmt.Errorf("mail drop: %w", err)
	}
	// Once renamed there is nothing to remove; before, the error returned
	// says why the message was not dropped.
	defer func() { _ = os.Remove(tmp.Name()) }()
	if _, err := msg.WriteTo(tmp); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("mail drop: write %s: %w", tmp.Name(), err)
	}
	if err := tmp.Sync(); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("mail drop: sync %s: %w", tmp.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("mail drop: close %s: %w", tmp.Name(), err)
	}
	path := filepath.Join(d.Dir, name)
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("mail drop: %w", err)
	}
	log := d.Log
	if log == nil {
		log = slog.Default()
	}
	log.Info("invitation written to mail drop", "to", m.To, "file", path, "claim_url", m.ClaimURL)
	return nil
}

// fileName is the invitation id (or, failing that, the Message-ID) made
// safe as a file name.
func fileName(m *Message) string {
	key := m.InvitationID
	if key == "" {
		key = m.MessageID
	}
	key = strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_', r == '.', r == '@':
			return r
		}
		return '_'
	}, key)
	key = strings.TrimLeft(key, ".")
	if key == "" {
		key = "message"
	}
	return key + ".eml"
}

// NewSender returns the Sender seatd uses: SMTP when smtpURL is set, the
// mail drop under <dataDir>/mail otherwise. The returned description is
// safe to log (no password).
func NewSender(smtpURL, dataDir string, log *slog.Logger) (Sender, string, error) {
	if smtpURL == "" {
		dir := filepath.Join(dataDir, "mail")
		d, err := NewMailDrop(dir, log)
		if err != nil {
			return nil, "", err
		}
		return d, "mail drop " + dir, nil
	}
	cfg, err := ParseSMTPURL(smtpURL)
	if err != nil {
		return nil, "", err
	}
	s, err := NewSMTPSender(cfg)
	if err != nil {
		return nil, "", err
	}
	return s, s.String(), nil
}
