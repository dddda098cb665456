// Package mailtest runs a real SMTP server for tests.
//
// Start listens on 127.0.0.1 on a free port and records every message it
// accepts: raw bytes, envelope, parsed headers, and whether the session
// used TLS or AUTH. Tests script its answers (RejectFirst, RejectAll,
// RejectTo for one recipient's messages),
// make it require authentication or offer TLS (Config), and stop a
// transaction at the end of DATA until they say so (Hold, Release), which
// is how crash tests kill a client at a precise moment. Waiting is done
// with WaitForMessages and WaitForHeld, never with sleeps.
//
// The server speaks SMTP through github.com/emersion/go-smtp, so clients
// under test go through a genuine protocol exchange.
package mailtest

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"mime"
	"mime/multipart"
	"net"
	"net/mail"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// Config chooses what the server offers and requires.
type Config struct {
	// Username and Password, when set, make the server offer AUTH PLAIN
	// and refuse MAIL FROM before authentication with 530 5.7.0.
	Username string
	Password string
	// STARTTLS makes the server offer STARTTLS with a self-signed
	// certificate for 127.0.0.1 and localhost; ClientTLSConfig trusts it.
	STARTTLS bool
	// ImplicitTLS makes the server speak TLS from the first byte (SMTPS)
	// with the same certificate.
	ImplicitTLS bool
	// MaxConnections, when set, makes the server refuse a client more
	// connections than that at once: 421 to EHLO, as busy servers do.
	MaxConnections int
	// MessagesPerConnection, when set, makes the server drop a connection
	// that has carried that many transactions when it sends the next MAIL
	// FROM, without a reply: a server that limits messages per
	// connection, or has timed an idle client out.
	MessagesPerConnection int
}

// HoldMode says where Hold stops a transaction.
type HoldMode int

const (
	// HoldNone: transactions are answered at once.
	HoldNone HoldMode = iota
	// HoldBeforeAccept stops a transaction after the message data has
	// arrived and before the server answers. Released, the transaction
	// is answered as scripted; if the client disconnects first, the
	// message is dropped and never counts as accepted.
	HoldBeforeAccept
	// HoldAfterAccept records the message as accepted and then withholds
	// the 250 reply until Release or until the client disconnects: the
	// window in which the server has the message but the client does not
	// know it.
	HoldAfterAccept
)

// Message is one message the server accepted.
type Message struct {
	From     string   // MAIL FROM
	To       []string // RCPT TO
	Raw      []byte   // the DATA, as received (CRLF line ends)
	Header   mail.Header
	TLS      bool      // the session was encrypted (STARTTLS or implicit)
	AuthUser string    // the authenticated user, empty without AUTH
	Started  time.Time // MAIL FROM was accepted: the client began the transaction
	Received time.Time // the DATA was read whole
}

// MessageID is the Message-ID header, angle brackets included.
func (m Message) MessageID() string { return m.Header.Get("Message-Id") }

// Subject is the decoded Subject header.
func (m Message) Subject() string {
	s := m.Header.Get("Subject")
	if d, err := new(mime.WordDecoder).DecodeHeader(s); err == nil {
		return d
	}
	return s
}

// Text is the decoded text/plain part of the message.
func (m Message) Text() (string, error) { return m.Part("text/plain") }

// HTML is the decoded text/html part of the message.
func (m Message) HTML() (string, error) { return m.Part("text/html") }

// Part returns the first part of the given media type, with its transfer
// encoding undone.
func (m Message) Part(mediaType string) (string, error) {
	msg, err := mail.ReadMessage(bytes.NewReader(m.Raw))
	if err != nil {
		return "", err
	}
	body, ok, err := findPart(msg.Header.Get("Content-Type"), msg.Header.Get("Content-Transfer-Encoding"), msg.Body, mediaType)
	if err != nil {
		return "", err
	}
	if !ok {
		return "", fmt.Errorf("mailtest: message has no %s part", mediaType)
	}
	return body, nil
}

// Server is a running test SMTP server.
type Server struct {
	cfg       Config
	srv       *smtp.Server
	addr      *net.TCPAddr
	clientTLS *tls.Config

	mu           sync.Mutex
	changed      chan struct{} // closed and replaced on every change
	messages     []Message
	transactions int
	connections  int // accepted so far
	open         int // open now
	rejectLeft   int // transactions still to reject; -1 rejects forever
	reject       *smtp.SMTPError
	rejectTo     map[string]*rcptScript // by lower-cased recipient
	hold         HoldMode
	held         int
	release      chan struct{} // closed by Release
	closed       bool
}

// Start runs a server until the test ends.
func Start(tb testing.TB, cfg Config) *Server {
	tb.Helper()
	s, err := New(cfg)
	if err != nil {
		tb.Fatalf("mailtest: %v", err)
	}
	tb.Cleanup(s.Close)
	return s
}

// New runs a server until Close, for callers without a testing.TB (a
// child process, a benchmark harness).
func New(cfg Config) (*Server, error) {
	s := &Server{
		cfg:     cfg,
		changed: make(chan struct{}),
		release: make(chan struct{}),
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s.addr = ln.Addr().(*net.TCPAddr)
	ln = countingListener{ln, s}
	srv := smtp.NewServer(smtp.BackendFunc(s.newSession))
	srv.Domain = "mailtest.localhost"
	srv.AllowInsecureAuth = true // credentials over plain TCP to 127.0.0.1
	srv.ReadTimeout = 30 * time.Second
	srv.WriteTimeout = 30 * time.Second
	srv.MaxMessageBytes = 10 << 20
	srv.ErrorLog = log.New(io.Discard, "", 0)
	if os.Getenv("MAILTEST_DEBUG") != "" {
		srv.Debug = os.Stderr
	}
	if cfg.STARTTLS || cfg.ImplicitTLS {
		serverTLS, clientTLS, err := selfSigned()
		if err != nil {
			_ = ln.Close() // never served
			return nil, err
		}
		s.clientTLS = clientTLS
		if cfg.ImplicitTLS {
			ln = tls.NewListener(ln, serverTLS)
		} else {
			srv.TLSConfig = serverTLS
		}
	}
	s.srv = srv
	go srv.Serve(ln) //nolint:errcheck // returns when closed
	return s, nil
}

// Close stops the server, releasing held transactions first.
func (s *Server) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	s.mu.Unlock()
	s.Release()
	_ = s.srv.Close() // closes the listener and the sessions; nothing is left to flush
}

// Addr is host:port.
func (s *Server) Addr() string { return s.addr.String() }

// Host is 127.0.0.1.
func (s *Server) Host() string { return s.addr.IP.String() }

// Port is the port the server listens on.
func (s *Server) Port() int { return s.addr.Port }

// URL is an SMTP URL for the server in the form seatd reads from
// SMTP_URL: smtp:// (smtps:// with ImplicitTLS), with the configured
// credentials. Add ?tls=... as the test needs.
func (s *Server) URL() string {
	u := url.URL{Scheme: "smtp", Host: net.JoinHostPort(s.Host(), strconv.Itoa(s.Port()))}
	if s.cfg.ImplicitTLS {
		u.Scheme = "smtps"
	}
	if s.cfg.Username != "" || s.cfg.Password != "" {
		u.User = url.UserPassword(s.cfg.Username, s.cfg.Password)
	}
	return u.String()
}

// ClientTLSConfig trusts the server's certificate; nil without TLS.
func (s *Server) ClientTLSConfig() *tls.Config {
	if s.clientTLS == nil {
		return nil
	}
	return s.clientTLS.Clone()
}

// RejectFirst answers the next n transactions with code (4xx or 5xx) and
// text at the end of DATA, then accepts again.
func (s *Server) RejectFirst(n, code int, text string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rejectLeft, s.reject = n, replyError(code, text)
}

// RejectAll answers every transaction with code and text until AcceptAll.
func (s *Server) RejectAll(code int, text string) {
	s.RejectFirst(-1, code, text)
}

// rcptScript is RejectTo's answer for one recipient.
type rcptScript struct {
	left  int // transactions still to reject; -1 rejects forever
	reply *smtp.SMTPError
}

// RejectTo answers the next n transactions with rcpt among their
// recipients (n < 0: all of them) with code and text at the end of DATA,
// before RejectFirst and RejectAll are consulted; transactions to others
// are not affected.
func (s *Server) RejectTo(rcpt string, n, code int, text string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.rejectTo == nil {
		s.rejectTo = map[string]*rcptScript{}
	}
	s.rejectTo[strings.ToLower(rcpt)] = &rcptScript{left: n, reply: replyError(code, text)}
}

// AcceptAll undoes RejectFirst, RejectAll and RejectTo.
func (s *Server) AcceptAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rejectLeft, s.reject, s.rejectTo = 0, nil, nil
}

// Hold makes transactions that reach the end of DATA from now on wait
// as mode says, until Release.
func (s *Server) Hold(mode HoldMode) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hold = mode
}

// Release lets every waiting transaction go on and stops holding new ones.
func (s *Server) Release() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hold = HoldNone
	close(s.release)
	s.release = make(chan struct{})
}

// Held is the number of transactions waiting now.
func (s *Server) Held() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.held
}

// Messages returns the accepted messages, oldest first.
func (s *Server) Messages() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Message(nil), s.messages...)
}

// Connections is the number of connections clients have opened.
func (s *Server) Connections() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.connections
}

// Transactions is the number of transactions answered at the end of
// DATA, accepted or rejected. Transactions dropped because the client
// went away while held are not counted.
func (s *Server) Transactions() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.transactions
}

// WaitForMessages waits until at least n messages were accepted and
// returns them all; it fails the test after timeout.
func (s *Server) WaitForMessages(tb testing.TB, n int, timeout time.Duration) []Message {
	tb.Helper()
	if !s.waitUntil(timeout, func() bool { return len(s.messages) >= n }) {
		tb.Fatalf("mailtest: %d messages accepted after %v, want %d", len(s.Messages()), timeout, n)
	}
	return s.Messages()
}

// WaitForHeld waits until exactly n transactions are held; it fails the
// test after timeout. WaitForHeld(tb, 0, ...) after killing a client
// waits for the server to notice and drop its transaction.
func (s *Server) WaitForHeld(tb testing.TB, n int, timeout time.Duration) {
	tb.Helper()
	if !s.waitUntil(timeout, func() bool { return s.held == n }) {
		tb.Fatalf("mailtest: %d transactions held after %v, want %d", s.Held(), timeout, n)
	}
}

// waitUntil waits for cond, evaluated with s.mu held, to become true.
func (s *Server) waitUntil(timeout time.Duration, cond func() bool) bool {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		s.mu.Lock()
		ok, changed := cond(), s.changed
		s.mu.Unlock()
		if ok {
			return true
		}
		select {
		case <-changed:
		case <-deadline.C:
			return false
		}
	}
}

// notify wakes waiters; s.mu must be held.
func (s *Server) notify() {
	close(s.changed)
	s.changed = make(chan struct{})
}

var errClientGone = errors.New("client went away while held")

// finish answers a transaction whose data has arrived.
func (s *Server) finish(c *smtp.Conn, m Message) error {
	s.mu.Lock()
	mode := s.hold
	s.mu.Unlock()
	if mode == HoldBeforeAccept && !s.wait(c) {
		return errClientGone
	}
	s.mu.Lock()
	s.transactions++
	var reply error
	if r := s.rcptReply(m.To); r != nil {
		reply = r
	} else if s.reject != nil && s.rejectLeft != 0 {
		reply = s.reject
		if s.rejectLeft > 0 {
			s.rejectLeft--
		}
	} else {
		s.messages = append(s.messages, m)
	}
	s.notify()
	s.mu.Unlock()
	if reply != nil {
		return reply
	}
	if mode == HoldAfterAccept {
		s.wait(c)
	}
	return nil
}

// rcptReply is RejectTo's reply to a transaction to rcpts, if any; s.mu
// must be held.
func (s *Server) rcptReply(rcpts []string) error {
	for _, rcpt := range rcpts {
		sc := s.rejectTo[strings.ToLower(rcpt)]
		if sc == nil || sc.left == 0 {
			continue
		}
		if sc.left > 0 {
			sc.left--
		}
		return sc.reply
	}
	return nil
}

// wait holds a transaction until Release (true) or until the client
// disconnects (false).
func (s *Server) wait(c *smtp.Conn) bool {
	s.mu.Lock()
	release := s.release
	s.held++
	s.notify()
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.held--
		s.notify()
		s.mu.Unlock()
	}()

	// While the client waits for our reply it sends nothing, so a read
	// on the raw connection returns only when it disconnects (or when we
	// interrupt it with a deadline). A well-behaved client loses no data.
	nc := c.Conn()
	gone := make(chan struct{})
	probed := make(chan struct{})
	go func() {
		defer close(probed)
		var b [1]byte
		_, err := nc.Read(b[:])
		var ne net.Error
		if err == nil || !errors.As(err, &ne) || !ne.Timeout() {
			close(gone)
		}
	}()
	released := false
	select {
	case <-release:
		released = true
	case <-gone:
	}
	_ = nc.SetReadDeadline(time.Now())
	<-probed
	_ = nc.SetReadDeadline(time.Time{})
	select {
	case <-gone:
		return false
	default:
		return released
	}
}

func replyError(code int, text string) *smtp.SMTPError {
	if text == "" {
		text = "scripted reply"
	}
	return &smtp.SMTPError{Code: code, EnhancedCode: smtp.EnhancedCodeNotSet, Message: text}
}

type session struct {
	s            *Server
	conn         *smtp.Conn
	from         string
	to           []string
	authUser     string
	started      time.Time // of the current transaction
	transactions int
}

func (s *Server) newSession(c *smtp.Conn) (smtp.Session, error) {
	nc := c.Conn()
	if tc, ok := nc.(*tls.Conn); ok {
		nc = tc.NetConn()
	}
	if cc, ok := nc.(*countedConn); ok && cc.overLimit {
		return nil, &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 7, 0}, Message: "Too many connections from your host"}
	}
	return &session{s: s, conn: c}, nil
}

// countingListener counts the connections the server accepts and those
// open (a session is not one: STARTTLS starts a new session on the same
// connection).
type countingListener struct {
	net.Listener
	s *Server
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.s.mu.Lock()
	l.s.connections++
	l.s.open++
	over := l.s.cfg.MaxConnections > 0 && l.s.open > l.s.cfg.MaxConnections
	l.s.mu.Unlock()
	return &countedConn{Conn: c, s: l.s, overLimit: over}, nil
}

type countedConn struct {
	net.Conn
	s         *Server
	overLimit bool // opened while MaxConnections others were
	once      sync.Once
}

func (c *countedConn) Close() error {
	c.once.Do(func() {
		c.s.mu.Lock()
		c.s.open--
		c.s.mu.Unlock()
	})
	return c.Conn.Close()
}

func (se *session) AuthMechanisms() []string {
	if se.s.cfg.Username == "" && se.s.cfg.Password == "" {
		return nil
	}
	return []string{sasl.Plain}
}

func (se *session) Auth(mech string) (sasl.Server, error) {
	if mech != sasl.Plain || len(se.AuthMechanisms()) == 0 {
		return nil, smtp.ErrAuthUnknownMechanism
	}
	return sasl.NewPlainServer(func(identity, username, password string) error {
		if username != se.s.cfg.Username || password != se.s.cfg.Password {
			return smtp.ErrAuthFailed
		}
		se.authUser = username
		return nil
	}), nil
}

func (se *session) Mail(from string, _ *smtp.MailOptions) error {
	if n := se.s.cfg.MessagesPerConnection; n > 0 && se.transactions >= n {
		_ = se.conn.Conn().Close() // the point: the client hears nothing more
		return errors.New("mailtest: connection dropped after its messages")
	}
	if len(se.AuthMechanisms()) > 0 && se.authUser == "" {
		return &smtp.SMTPError{Code: 530, EnhancedCode: smtp.EnhancedCode{5, 7, 0}, Message: "Authentication required"}
	}
	se.from, se.started = from, time.Now()
	return nil
}

func (se *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	se.to = append(se.to, to)
	return nil
}

func (se *session) Data(r io.Reader) error {
	se.transactions++
	raw, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	m := Message{From: se.from, To: append([]string(nil), se.to...), Raw: raw, AuthUser: se.authUser,
		Started: se.started, Received: time.Now()}
	_, m.TLS = se.conn.TLSConnectionState()
	if parsed, err := mail.ReadMessage(bytes.NewReader(raw)); err == nil {
		m.Header = parsed.Header
	} else {
		m.Header = mail.Header{}
	}
	return se.s.finish(se.conn, m)
}

func (se *session) Reset() {
	se.from, se.to = "", nil
}

func (se *session) Logout() error { return nil }

// findPart walks a MIME tree for the first part of type want.
func findPart(contentType, encoding string, body io.Reader, want string) (string, bool, error) {
	if contentType == "" {
		contentType = "text/plain"
	}
	mt, params, err := mime.ParseMediaType(contentType)
	if err != nil {
		return "", false, err
	}
	if strings.HasPrefix(mt, "multipart/") {
		mr := multipart.NewReader(body, params["boundary"])
		for {
			p, err := mr.NextPart()
			if err == io.EOF {
				return "", false, nil
			}
			if err != nil {
				return "", false, err
			}
			// multipart.Reader undoes quoted-printable itself and drops
			// the header; base64 is left to us.
			s, ok, err := findPart(p.Header.Get("Content-Type"), p.Header.Get("Content-Transfer-Encoding"), p, want)
			if err != nil || ok {
				return s, ok, err
			}
		}
	}
	if mt != want {
		return "", false, nil
	}
	b, err := io.ReadAll(decodeTransfer(body, encoding))
	if err != nil {
		return "", false, err
	}
	return string(b), true, nil
}
