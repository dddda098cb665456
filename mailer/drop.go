package mailer

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
)

// Sender hands messages over for good: to an SMTP server that accepted
// them, or to disk.
type Sender interface {
	// SendAll hands msgs over together and reports each message's outcome
	// to done as soon as it is known, possibly from several goroutines at
	// once; it returns once every message has been reported. A nil error
	// means the message was handed over for good; an error for which
	// IsPermanent is true means it never will be.
	SendAll(ctx context.Context, msgs []*Message, done func([]Outcome))
}

// Outcome is what became of one message given to SendAll.
type Outcome struct {
	Index int // of the message in SendAll's msgs
	Err   error
}

// dropWriters is the most files a MailDrop writes at once.
const dropWriters = 32

// sendOne is SendAll of a single message.
func sendOne(ctx context.Context, s Sender, m *Message) error {
	var err error
	s.SendAll(ctx, []*Message{m}, func(o []Outcome) { err = o[0].Err })
	return err
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
func (d *MailDrop) Send(ctx context.Context, m *Message) error { return sendOne(ctx, d, m) }

// SendAll writes every message's file at once, each written to a
// temporary file, fsynced and renamed into place, then fsyncs the directory
// once, which puts all the renames on disk; it reports the messages
// together after that. Each one written gets its log line, as Send's.
func (d *MailDrop) SendAll(ctx context.Context, msgs []*Message, done func([]Outcome)) {
	errs := make([]error, len(msgs))
	var wg sync.WaitGroup
	// Past a few dozen, more writers only wait on the same disk.
	sem := make(chan struct{}, dropWriters)
	for i, m := range msgs {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			errs[i] = d.write(ctx, m)
		}()
	}
	wg.Wait()
	if slices.Contains(errs, nil) {
		if err := syncDir(d.Dir); err != nil {
			for i := range errs {
				if errs[i] == nil {
					errs[i] = fmt.Errorf("mail drop: sync %s: %w", d.Dir, err)
				}
			}
		}
	}
	log := d.Log
	if log == nil {
		log = slog.Default()
	}
	out := make([]Outcome, len(msgs))
	for i, m := range msgs {
		out[i] = Outcome{Index: i, Err: errs[i]}
		if errs[i] == nil {
			log.Info("invitation written to mail drop", "to", m.To, "file", filepath.Join(d.Dir, fileName(m)), "claim_url", m.ClaimURL)
		}
	}
	done(out)
}

// write puts m in its file; the file is on disk, its name once the
// directory is synced.
func (d *MailDrop) write(ctx context.Context, m *Message) error {
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
	if err := os.Rename(tmp.Name(), filepath.Join(d.Dir, name)); err != nil {
		return fmt.Errorf("mail drop: %w", err)
	}
	return nil
}

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
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
