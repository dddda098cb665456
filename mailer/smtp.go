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
	"sync"
	"sync/atomic"
	"time"

	gomail "github.com/wneessen/go-mail"
	gosmtp "github.com/wneessen/go-mail/smtp"
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
	// Connections is how many connections SendAll uses at once; default
	// 4. Each carries message after message.
	Connections int
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

// SMTPSender submits messages to an SMTP server with go-mail, over up to
// SMTPConfig.Connections connections at once, each carrying message after
// message.
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
	if cfg.Connections <= 0 {
		cfg.Connections = 4
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

// Send submits m over a connection of its own. A nil error means the
// server accepted the message; use IsPermanent to tell a rejection that
// will never succeed from one worth retrying. Cancelling ctx aborts the
// conversation.
func (s *SMTPSender) Send(ctx context.Context, m *Message) error { return sendOne(ctx, s, m) }

// SendAll submits msgs over up to Connections connections at once. Each
// connection is set up once (greeting, EHLO, STARTTLS, AUTH) and carries
// message after message, and each message is reported as soon as the
// server has answered it. Cancelling ctx aborts the conversations.
func (s *SMTPSender) SendAll(ctx context.Context, msgs []*Message, done func([]Outcome)) {
	next := make(chan int, len(msgs))
	for i := range msgs {
		next <- i
	}
	close(next)
	n := min(s.cfg.Connections, len(msgs))
	var live atomic.Int32
	live.Store(int32(n))
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.session(ctx, msgs, next, &live, done)
		}()
	}
	wg.Wait()
}

// session sends the messages it takes from next over one connection,
// taking a message only once it has a connection. A session that cannot
// connect leaves the messages to the others (a server may refuse a
// client's extra connections); the last one to go reports its failure for
// every message still waiting, as each waiting out a timeout of its own
// would only hold up the rest.
func (s *SMTPSender) session(ctx context.Context, msgs []*Message, next <-chan int, live *atomic.Int32, done func([]Outcome)) {
	c := &smtpConn{s: s}
	var failed error // why this session could not go on
	defer func() {
		c.close(true)
		if live.Add(-1) == 0 && failed != nil {
			for i := range next {
				done([]Outcome{{Index: i, Err: failed}})
			}
		}
	}()
	for {
		if c.sc == nil {
			if failed = c.dial(ctx); failed != nil {
				return
			}
		}
		i, ok := <-next
		if !ok {
			return
		}
		err := c.send(ctx, msgs[i])
		done([]Outcome{{Index: i, Err: err}})
		var de *dialError
		if errors.As(err, &de) {
			failed = err
			return
		}
	}
}

// dialError is a failure to set up a connection: dial, greeting, EHLO,
// STARTTLS or AUTH.
type dialError struct{ err error }

func (e *dialError) Error() string { return e.err.Error() }
func (e *dialError) Unwrap() error { return e.err }

// smtpConn is one connection to the server, reused from message to
// message, and dialled again after a failure that may have broken it.
type smtpConn struct {
	s *SMTPSender
	// client holds go-mail's per-connection state, which is not safe to
	// share between concurrent sends: one per connection.
	client *gomail.Client
	sc     *gosmtp.Client
	nc     net.Conn
	stop   func() bool // stops closing nc when ctx ends
	sent   int         // messages sc has carried
}

func (c *smtpConn) send(ctx context.Context, m *Message) error {
	msg, err := m.build()
	if err != nil {
		return err
	}
	for {
		if c.sc == nil {
			if err := c.dial(ctx); err != nil {
				return err
			}
		}
		err := c.client.SendWithSMTPClient(c.sc, msg)
		if err == nil || msg.IsDelivered() {
			// The server accepted the message; anything that failed came
			// after. Reporting a failure would make the caller send it
			// again.
			c.sent++
			if err != nil {
				c.close(false)
			}
			return nil
		}
		reused := c.sent > 0
		if !answered(err) {
			c.close(false)
		}
		if reused && closedBeforeTransaction(err) {
			// The server let go of a connection that had carried earlier
			// messages (idle, or a limit per connection) before this
			// transaction began: nothing of it was sent, so it goes on a
			// new connection, once (a new connection has carried nothing).
			continue
		}
		return fmt.Errorf("smtp %s: send failed: %w", c.s.addr(), err)
	}
}

// answered reports whether the server answered err's command with a reply
// that leaves the connection usable: a 4xx or 5xx within the transaction,
// except 421, with which a server closes it.
func answered(err error) bool {
	var se *gomail.SendError
	if !errors.As(err, &se) {
		return false
	}
	code := se.ErrorCode()
	return code >= 400 && code < 600 && code != 421
}

// closedBeforeTransaction reports whether err found the connection gone
// before MAIL FROM was accepted, so no part of the message reached the
// server.
func closedBeforeTransaction(err error) bool {
	var se *gomail.SendError
	if !errors.As(err, &se) {
		return false
	}
	code := se.ErrorCode()
	return (se.Reason == gomail.ErrConnCheck || se.Reason == gomail.ErrSMTPMailFrom) && (code == 0 || code == 421)
}

// dial sets up a connection; its error is a *dialError.
func (c *smtpConn) dial(ctx context.Context) error {
	dial := func(dctx context.Context, network, addr string) (net.Conn, error) {
		d := net.Dialer{Timeout: c.s.cfg.Timeout}
		conn, err := d.DialContext(dctx, network, addr)
		if err != nil {
			return nil, err
		}
		// Closing is how a cancelled ctx aborts the conversation; the
		// send then fails with the cancellation, which is what matters.
		c.nc, c.stop = conn, context.AfterFunc(ctx, func() { _ = conn.Close() })
		if c.s.cfg.TLS != TLSImplicit {
			return conn, nil
		}
		tc := tls.Client(conn, c.s.cfg.TLSConfig)
		if err := tc.HandshakeContext(dctx); err != nil {
			return nil, err // the handshake error says what went wrong; close closes conn
		}
		return tc, nil
	}
	client, err := gomail.NewClient(c.s.cfg.Host, c.s.options(dial)...)
	if err == nil {
		c.client = client
		c.sc, err = client.DialToSMTPClientWithContext(ctx)
	}
	if err != nil {
		c.close(false)
		return &dialError{fmt.Errorf("smtp %s: dial failed: %w", c.s.addr(), err)}
	}
	return nil
}

// close ends the connection: with QUIT if quit is set (the connection is
// still in order), else by closing it.
func (c *smtpConn) close(quit bool) {
	if quit && c.sc != nil {
		_ = c.client.CloseWithSMTPClient(c.sc) // every message has its answer; QUIT is a courtesy
	}
	if c.nc != nil {
		_ = c.nc.Close() // already closed by QUIT, or given up on
		c.stop()
	}
	c.client, c.sc, c.nc, c.stop, c.sent = nil, nil, nil, nil, 0
}

// options are go-mail's settings for one connection that dial opens.
func (s *SMTPSender) options(dial gomail.DialContextFunc) []gomail.Option {
	opts := []gomail.Option{
		gomail.WithPort(s.cfg.Port),
		gomail.WithTimeout(s.cfg.Timeout),
		gomail.WithTLSConfig(s.cfg.TLSConfig),
		gomail.WithDialContextFunc(dial),
		// A transaction ends with the server's answer to DATA (RFC 5321
		// 4.1.4), so the next MAIL FROM needs no RSET; and a dead
		// connection shows at MAIL FROM as well as at a NOOP.
		gomail.WithoutRset(),
		gomail.WithoutNoop(),
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
	return opts
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
