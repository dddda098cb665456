package mailer

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	gomail "github.com/wneessen/go-mail"
)

// TLSMode says how the SMTP connection is encrypted.
type TLSMode string

const (
	// TLSOpportunistic upgrades with STARTTLS when the server offers it
	// and continues in clear otherwise. The default for smtp:// URLs.
	TLSOpportunistic TLSMode = "opportunistic"
	// TLSStartTLS requires STARTTLS: a server that does not offer it is
	// an error. smtp://...?tls=starttls
	TLSStartTLS TLSMode = "starttls"
	// TLSNone never encrypts. smtp://...?tls=none
	TLSNone TLSMode = "none"
	// TLSImplicit speaks TLS from the first byte (SMTPS). smtps://...
	TLSImplicit TLSMode = "implicit"
)

// SMTPConfig is where and how to submit mail.
type SMTPConfig struct {
	Host string
	Port int // 0: 465 for TLSImplicit, 25 for TLSNone, 587 otherwise
	// Username and Password enable SMTP AUTH. The mechanism is the best
	// one the server offers (SCRAM, CRAM-MD5, PLAIN, LOGIN); PLAIN and
	// LOGIN are only used over TLS or to localhost, so a password never
	// crosses the network in clear.
	Username string
	Password string
	TLS      TLSMode
	// TLSConfig overrides the TLS client configuration (e.g. a private
	// CA); ServerName defaults to Host.
	TLSConfig *tls.Config
	// Timeout bounds the connection and every SMTP command; default 30s.
	Timeout time.Duration
	// HELO is the name given in EHLO; default the machine's host name.
	HELO string
}

// ParseSMTPURL reads an SMTP_URL:
//
//	smtp://[user:pass@]host[:port][?tls=opportunistic|starttls|none][&timeout=30s]
//	smtps://[user:pass@]host[:port][?timeout=30s]
//
// User and password are URL-encoded. Errors never contain the password.
func ParseSMTPURL(raw string) (SMTPConfig, error) {
	bad := func(format string, args ...any) (SMTPConfig, error) {
		return SMTPConfig{}, fmt.Errorf("SMTP_URL %s: %s", RedactURL(raw), fmt.Sprintf(format, args...))
	}
	u, err := url.Parse(raw)
	if err != nil {
		// url.Parse quotes the whole URL in its error: say less.
		return bad("not a valid URL")
	}
	var cfg SMTPConfig
	switch u.Scheme {
	case "smtp":
		cfg.TLS = TLSOpportunistic
	case "smtps":
		cfg.TLS = TLSImplicit
	default:
		return bad("scheme must be smtp or smtps")
	}
	cfg.Host = u.Hostname()
	if cfg.Host == "" {
		return bad("no host")
	}
	if p := u.Port(); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n <= 0 || n > 65535 {
			return bad("bad port %q", p)
		}
		cfg.Port = n
	}
	if u.User != nil {
		cfg.Username = u.User.Username()
		cfg.Password, _ = u.User.Password()
	}
	q := u.Query()
	for k := range q {
		if k != "tls" && k != "timeout" {
			return bad("unknown parameter %q", k)
		}
	}
	if v := q.Get("tls"); v != "" {
		if cfg.TLS == TLSImplicit {
			return bad("tls= does not apply to smtps")
		}
		switch TLSMode(v) {
		case TLSOpportunistic, TLSStartTLS, TLSNone:
			cfg.TLS = TLSMode(v)
		default:
			return bad("tls must be opportunistic, starttls or none, not %q", v)
		}
	}
	if v := q.Get("timeout"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return bad("bad timeout %q", v)
		}
		cfg.Timeout = d
	}
	return cfg, nil
}

// RedactURL returns raw with any password masked, for printing SMTP_URL
// (or any URL with credentials) in logs and at start-up.
func RedactURL(raw string) string {
	if u, err := url.Parse(raw); err == nil {
		return u.Redacted()
	}
	// Unparseable: mask everything between the scheme and the last '@' of
	// the authority, which is where a password would be.
	scheme, rest, ok := strings.Cut(raw, "://")
	if !ok {
		return "(unparseable URL)"
	}
	end := strings.IndexAny(rest, "/?#")
	if end < 0 {
		end = len(rest)
	}
	if at := strings.LastIndex(rest[:end], "@"); at >= 0 {
		return scheme + "://xxxxx@" + rest[at+1:]
	}
	return raw
}

// SMTPSender submits messages to an SMTP server with go-mail, one
// connection per message.
type SMTPSender struct {
	cfg SMTPConfig
}

// NewSMTPSender checks cfg and fills in its defaults.
func NewSMTPSender(cfg SMTPConfig) (*SMTPSender, error) {
	if cfg.Host == "" {
		return nil, errors.New("smtp: no host")
	}
	switch cfg.TLS {
	case "":
		cfg.TLS = TLSOpportunistic
	case TLSOpportunistic, TLSStartTLS, TLSNone, TLSImplicit:
	default:
		return nil, fmt.Errorf("smtp: unknown TLS mode %q", cfg.TLS)
	}
	if cfg.Port == 0 {
		switch cfg.TLS {
		case TLSImplicit:
			cfg.Port = 465
		case TLSNone:
			cfg.Port = 25
		default:
			cfg.Port = 587
		}
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 30 * time.Second
	}
	if cfg.TLSConfig == nil {
		cfg.TLSConfig = &tls.Config{}
	} else {
		cfg.TLSConfig = cfg.TLSConfig.Clone()
	}
	if cfg.TLSConfig.ServerName == "" {
		cfg.TLSConfig.ServerName = cfg.Host
	}
	if cfg.TLSConfig.MinVersion == 0 {
		cfg.TLSConfig.MinVersion = tls.VersionTLS12
	}
	return &SMTPSender{cfg: cfg}, nil
}

// String describes the sender without its password.
func (s *SMTPSender) String() string {
	u := url.URL{Scheme: "smtp", Host: s.addr()}
	if s.cfg.TLS == TLSImplicit {
		u.Scheme = "smtps"
	} else {
		u.RawQuery = "tls=" + string(s.cfg.TLS)
	}
	if s.cfg.Username != "" {
		u.User = url.UserPassword(s.cfg.Username, "xxxxx")
	}
	return u.String()
}

// Send submits m. A nil error means the server accepted the message; use
// IsPermanent to tell a rejection that will never succeed from one worth
// retrying. Cancelling ctx aborts the conversation.
func (s *SMTPSender) Send(ctx context.Context, m *Message) error {
	msg, err := m.build()
	if err != nil {
		return err
	}
	// The connection is closed when ctx ends, which aborts whatever
	// command is in progress; go-mail itself only watches ctx while
	// dialling.
	var stops []func() bool
	defer func() {
		for _, stop := range stops {
			stop()
		}
	}()
	dial := func(dctx context.Context, network, addr string) (net.Conn, error) {
		d := net.Dialer{Timeout: s.cfg.Timeout}
		conn, err := d.DialContext(dctx, network, addr)
		if err != nil {
			return nil, err
		}
		// Closing is how a cancelled ctx aborts the conversation; the
		// send then fails with the cancellation, which is what matters.
		stops = append(stops, context.AfterFunc(ctx, func() { _ = conn.Close() }))
		if s.cfg.TLS != TLSImplicit {
			return conn, nil
		}
		tc := tls.Client(conn, s.cfg.TLSConfig)
		if err := tc.HandshakeContext(dctx); err != nil {
			_ = conn.Close() // the handshake error says what went wrong
			return nil, err
		}
		return tc, nil
	}
	opts := []gomail.Option{
		gomail.WithPort(s.cfg.Port),
		gomail.WithTimeout(s.cfg.Timeout),
		gomail.WithTLSConfig(s.cfg.TLSConfig),
		gomail.WithDialContextFunc(dial),
		// One message per connection: no RSET between messages.
		gomail.WithoutRset(),
	}
	switch s.cfg.TLS {
	case TLSImplicit:
		opts = append(opts, gomail.WithSSL())
	case TLSStartTLS:
		opts = append(opts, gomail.WithTLSPolicy(gomail.TLSMandatory))
	case TLSNone:
		opts = append(opts, gomail.WithTLSPolicy(gomail.NoTLS))
	default:
		opts = append(opts, gomail.WithTLSPolicy(gomail.TLSOpportunistic))
	}
	if s.cfg.Username != "" || s.cfg.Password != "" {
		// PLAIN and LOGIN (not their -NOENC variants) refuse to send
		// credentials over an unencrypted connection to a remote host.
		opts = append(opts,
			gomail.WithOpportunisticSMTPAuth(gomail.SMTPAuthSCRAMSHA256PLUS, gomail.SMTPAuthSCRAMSHA256,
				gomail.SMTPAuthSCRAMSHA1PLUS, gomail.SMTPAuthSCRAMSHA1, gomail.SMTPAuthCramMD5,
				gomail.SMTPAuthPlain, gomail.SMTPAuthLogin),
			gomail.WithUsername(s.cfg.Username),
			gomail.WithPassword(s.cfg.Password))
	}
	if s.cfg.HELO != "" {
		opts = append(opts, gomail.WithHELO(s.cfg.HELO))
	}
	// A new client per message: go-mail's Client keeps per-connection
	// state that is not safe to share between concurrent sends.
	client, err := gomail.NewClient(s.cfg.Host, opts...)
	if err != nil {
		return fmt.Errorf("smtp %s: %w", s.addr(), err)
	}
	err = client.DialAndSendWithContext(ctx, msg)
	if err != nil && msg.IsDelivered() {
		// The server accepted the message; what failed came after (QUIT).
		// Reporting a failure would make the caller send it again.
		return nil
	}
	if err != nil {
		return fmt.Errorf("smtp %s: %w", s.addr(), err)
	}
	return nil
}

func (s *SMTPSender) addr() string { return net.JoinHostPort(s.cfg.Host, strconv.Itoa(s.cfg.Port)) }

// permanentError marks a failure that will recur on every attempt.
type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

func permanent(err error) error { return &permanentError{err} }

// IsPermanent reports whether retrying the delivery that failed with err
// is pointless: within the mail transaction the SMTP server refused the
// sender, the recipient or the message with a 5xx reply, or the message
// itself is malformed (an invalid address).
//
// Everything else is temporary: 4xx replies, timeouts, refused or reset
// connections, DNS failures, and every failure before the transaction
// starts (greeting, EHLO, STARTTLS, AUTH) or that asks for authentication
// (RFC 4954 codes 530, 534, 535, 538). Those fail alike for every message
// and are fixed by fixing the configuration, so they must not condemn the
// invitations waiting behind them.
func IsPermanent(err error) bool {
	if err == nil {
		return false
	}
	var p *permanentError
	if errors.As(err, &p) {
		return true
	}
	var se *gomail.SendError
	if !errors.As(err, &se) {
		return false
	}
	switch se.Reason {
	case gomail.ErrGetSender, gomail.ErrGetRcpts, gomail.ErrNoUnencoded:
		return true
	}
	switch code := se.ErrorCode(); code {
	case 530, 534, 535, 538:
		return false
	default:
		return code >= 500 && code < 600
	}
}
