package mailer

import (
	"fmt"
	"log/slog"
	"net"
	"net/mail"
	"net/url"
	"strings"
	"time"
	"unicode"

	gomail "github.com/wneessen/go-mail"

	"github.com/seatd/seatd/mailer/invite"
)

// Message is one rendered invitation email, ready for a Sender.
//
// ClaimURL (and the bodies, which contain it) carry the invitation token:
// a Message is never logged as a whole. Its String and LogValue methods
// leave the secret out; only the mail drop prints the claim URL, because
// in that development mode the log is the mailbox.
type Message struct {
	// InvitationID names the invitation; the mail drop names its file
	// after it.
	InvitationID string
	// MessageID is the Message-ID header without angle brackets. It is the
	// same for every delivery attempt of one invitation, so a receiving
	// system can recognise the one duplicate a crash can cause.
	MessageID string
	From      string // RFC 5322 address, e.g. "seatd <no-reply@example.com>"
	To        string // bare address
	Subject   string
	Date      time.Time
	Text      string
	HTML      string
	ClaimURL  string
}

// String describes m without its secrets.
func (m Message) String() string {
	return fmt.Sprintf("invitation %s to %s (Message-ID <%s>)", m.InvitationID, m.To, m.MessageID)
}

// LogValue describes m without its secrets.
func (m Message) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("invitation_id", m.InvitationID),
		slog.String("to", m.To),
		slog.String("message_id", m.MessageID),
	)
}

// build turns m into a go-mail message: multipart/alternative with the
// text part first, quoted-printable, UTF-8.
func (m *Message) build() (*gomail.Msg, error) {
	msg := gomail.NewMsg(gomail.WithNoDefaultUserAgent())
	if err := msg.From(m.From); err != nil {
		return nil, permanent(fmt.Errorf("from address %q: %w", m.From, err))
	}
	if err := msg.To(m.To); err != nil {
		return nil, permanent(fmt.Errorf("recipient address %q: %w", m.To, err))
	}
	msg.Subject(m.Subject)
	msg.SetMessageIDWithValue(m.MessageID)
	msg.SetDateWithValue(m.Date)
	msg.SetUserAgent("seatd")
	// RFC 3834: tells auto-responders (out-of-office) not to answer.
	msg.SetGenHeader(gomail.Header("Auto-Submitted"), "auto-generated")
	msg.SetBodyString(gomail.TypeTextPlain, m.Text)
	msg.AddAlternativeString(gomail.TypeTextHTML, m.HTML)
	return msg, nil
}

// Invitation is what an invitation email says.
type Invitation struct {
	ID           string // invitation id
	To           string // recipient address
	ProductName  string
	Organization string
	InviterEmail string // empty: the email says "Your team"
	Token        string // the claim token, in clear
	ExpiresAt    time.Time
}

// Composer renders invitations into Messages.
type Composer struct {
	// PublicURL is where seatd's claim page is served; the claim link is
	// PublicURL + "/claim?token=...". Its host also names Message-IDs.
	PublicURL string
	// From is the sender, e.g. "seatd <no-reply@example.com>"; empty means
	// DefaultFrom(PublicURL).
	From string
	// Templates word and style the email (shared with the claim page);
	// nil means the embedded ones.
	Templates *invite.Templates
}

func (c Composer) from() string {
	if c.From != "" {
		return c.From
	}
	return DefaultFrom(c.PublicURL)
}

// Compose renders inv as of now.
func (c Composer) Compose(inv Invitation, now time.Time) (*Message, error) {
	if inv.ID == "" || inv.Token == "" {
		return nil, fmt.Errorf("compose: invitation id and token are required")
	}
	claim, err := ClaimURL(c.PublicURL, inv.Token)
	if err != nil {
		return nil, err
	}
	from := c.from()
	tmpl := c.Templates
	if tmpl == nil {
		tmpl = invite.Default()
	}
	// Blank names stay blank here: the templates word the fallbacks.
	out, err := tmpl.RenderEmail(invite.Email{Invitation: invite.Invitation{
		Organization: oneLine(inv.Organization, ""),
		Product:      oneLine(inv.ProductName, ""),
		Inviter:      oneLine(inv.InviterEmail, ""),
		Invitee:      inv.To,
		ExpiresAt:    inv.ExpiresAt.UTC(),
	}, ClaimURL: claim, Now: now})
	if err != nil {
		return nil, fmt.Errorf("compose: %w", err)
	}
	return &Message{
		InvitationID: inv.ID,
		MessageID:    MessageID(inv.ID, c.PublicURL, from),
		From:         from,
		To:           inv.To,
		Subject:      out.Subject,
		Date:         now,
		Text:         out.Text,
		HTML:         out.HTML,
		ClaimURL:     claim,
	}, nil
}

// ClaimURL is the link that redeems token: publicURL/claim?token=token.
func ClaimURL(publicURL, token string) (string, error) {
	u, err := url.Parse(publicURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("public URL %q must be an absolute http(s) URL", publicURL)
	}
	u = u.JoinPath("claim")
	u.RawQuery = url.Values{"token": {token}}.Encode()
	u.Fragment = ""
	return u.String(), nil
}

// MessageID is the Message-ID (without angle brackets) of every delivery
// attempt of the invitation: invitation-<id>@<domain>, where the domain is
// the host of publicURL, else the domain of from.
func MessageID(invitationID, publicURL, from string) string {
	return "invitation-" + invitationID + "@" + domainOf(publicURL, from)
}

// DefaultFrom is the sender used when none is configured:
// seatd <no-reply@host of publicURL>.
func DefaultFrom(publicURL string) string {
	return "seatd <no-reply@" + domainOf(publicURL, "") + ">"
}

// domainOf picks a DNS name for Message-IDs and the default sender: the
// public URL's host if it is a name, else the sender's domain, else
// localhost.
func domainOf(publicURL, from string) string {
	if u, err := url.Parse(publicURL); err == nil {
		if h := u.Hostname(); h != "" && net.ParseIP(h) == nil {
			return strings.ToLower(h)
		}
	}
	if a, err := mail.ParseAddress(from); err == nil {
		if _, d, ok := strings.Cut(a.Address, "@"); ok && d != "" {
			return strings.ToLower(d)
		}
	}
	return "localhost"
}

// oneLine flattens control characters (a newline in a product name must
// not start a new header line or paragraph) and falls back to def when s
// is blank.
func oneLine(s, def string) string {
	s = strings.Join(strings.FieldsFunc(s, func(r rune) bool { return unicode.IsControl(r) || unicode.IsSpace(r) }), " ")
	if s == "" {
		return def
	}
	return s
}
