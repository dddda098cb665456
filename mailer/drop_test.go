package mailer

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/mail"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/seatd/seatd/mailer/mailtest"
)

func TestMailDropWritesParseableEML(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "mail")
	var logs bytes.Buffer
	drop, err := NewMailDrop(dir, slog.New(slog.NewJSONHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	msg := testMessage(t)
	if err := drop.Send(t.Context(), msg); err != nil {
		t.Fatal(err)
	}
	// A retry of the same invitation replaces the file.
	msg.Date = msg.Date.Add(time.Minute)
	if err := drop.Send(t.Context(), msg); err != nil {
		t.Fatal(err)
	}

	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Name() != msg.InvitationID+".eml" {
		t.Fatalf("mail drop holds %v, want exactly %s.eml", entries, msg.InvitationID)
	}
	path := filepath.Join(dir, entries[0].Name())
	if info, _ := os.Stat(path); info.Mode().Perm()&0o077 != 0 {
		t.Errorf("%s is readable by others (%v): it holds a token", path, info.Mode())
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("not RFC 5322: %v", err)
	}
	m := mailtest.Message{Raw: raw, Header: parsed.Header}
	if got, want := m.Subject(), "You've been invited to access Acme Pro"; got != want {
		t.Errorf("Subject = %q, want %q", got, want)
	}
	if got := m.MessageID(); got != "<"+msg.MessageID+">" {
		t.Errorf("Message-ID = %q", got)
	}
	text, html := bodies(t, m)
	for _, body := range []string{text, html} {
		if !strings.Contains(body, msg.ClaimURL) {
			t.Errorf("no claim link %q in:\n%s", msg.ClaimURL, body)
		}
	}

	// One line per message, naming recipient, file and claim URL.
	lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("%d log lines for 2 messages:\n%s", len(lines), logs.String())
	}
	var rec map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &rec); err != nil {
		t.Fatal(err)
	}
	if rec["to"] != msg.To || rec["file"] != path || rec["claim_url"] != msg.ClaimURL {
		t.Errorf("log line = %s", lines[0])
	}
}

func TestNewSender(t *testing.T) {
	dataDir := t.TempDir()
	s, desc, err := NewSender("", dataDir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if d, ok := s.(*MailDrop); !ok || d.Dir != filepath.Join(dataDir, "mail") {
		t.Errorf("without SMTP_URL: %T %+v, want a mail drop under %s/mail", s, s, dataDir)
	}
	if !strings.Contains(desc, "mail drop") {
		t.Errorf("description %q", desc)
	}

	s, desc, err = NewSender("smtp://seatd:hunter2@mail.example.com?tls=starttls", dataDir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := s.(*SMTPSender); !ok {
		t.Errorf("with SMTP_URL: %T, want *SMTPSender", s)
	}
	if strings.Contains(desc, "hunter2") || !strings.Contains(desc, "mail.example.com:587") {
		t.Errorf("description %q", desc)
	}
	if _, _, err := NewSender("smtp://seatd:hunter2@mail.example.com?tls=bogus", dataDir, nil); err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("bad SMTP_URL: %v", err)
	}
}

// SendAll writes a batch's files together and reports every message: one
// that cannot be written fails alone.
func TestMailDropSendAll(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "mail")
	var logs bytes.Buffer
	drop, err := NewMailDrop(dir, slog.New(slog.NewJSONHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	msgs := messagesTo(t, "a@example.test", "b@example.test", "not an address", "d@example.test")
	errs := sendAll(t, drop, msgs)
	for i, err := range errs {
		if i == 2 {
			if !IsPermanent(err) {
				t.Errorf("message to an invalid address: %v, want a permanent error", err)
			}
		} else if err != nil {
			t.Errorf("message %d: %v", i, err)
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	want := []string{msgs[0].InvitationID + ".eml", msgs[1].InvitationID + ".eml", msgs[3].InvitationID + ".eml"}
	if strings.Join(names, " ") != strings.Join(want, " ") {
		t.Errorf("mail drop holds %v, want %v", names, want)
	}
	for _, i := range []int{0, 1, 3} {
		raw, err := os.ReadFile(filepath.Join(dir, msgs[i].InvitationID+".eml"))
		if err != nil {
			t.Fatal(err)
		}
		parsed, err := mail.ReadMessage(bytes.NewReader(raw))
		if err != nil {
			t.Fatalf("message %d: not RFC 5322: %v", i, err)
		}
		if got := parsed.Header.Get("To"); !strings.Contains(got, msgs[i].To) {
			t.Errorf("file of message %d is addressed to %q", i, got)
		}
	}
	if n := strings.Count(strings.TrimSpace(logs.String()), "\n") + 1; n != 3 {
		t.Errorf("%d log lines for 3 messages written:\n%s", n, logs.String())
	}
}
