// Package mailer turns invitation mail requests into emails and records
// what became of each one.
//
// It owns the invitation email (subject, text and HTML bodies, rendered
// from package invite's templates, shared with the claim page), the Senders that
// hand a message over (SMTP through go-mail, configured from an SMTP_URL;
// or, in development, a mail drop that writes .eml files), the
// classification of delivery errors into temporary and permanent, and the
// Mailer: the consumer of events.MailerConsumer that drives each
// invitation through the delivery ledger in storage (queued → sending →
// sent, failed or cancelled). It works in batches of the requests at hand:
// one round trip locks and loads a batch, one marks its attempts, the
// Sender takes its emails together (the mail drop writes the files at once
// and syncs the directory once; SMTP reuses each connection for message
// after message), and the outcomes are recorded one statement per state,
// each request keeping its own outcome.
//
// What it promises:
//
//   - An invitation is never dropped. A mail request is acknowledged only
//     after its outcome is recorded; a Mailer killed at any moment leaves
//     the request unacknowledged and JetStream redelivers it.
//   - An invitation reaches the SMTP server once. The one exception is a
//     Mailer that dies after the server accepted the message and before
//     the ledger says sent: the redelivery sends it again, with the same
//     Message-ID (invitation-<id>@<domain>), so the copies are
//     recognisably one message. Accepted messages are recorded while the
//     rest of their batch is still being sent, so that window stays one
//     write long however large the batch. Two live Mailers never send the
//     same invitation at the same time (storage.DeliveryBatch holds a lock
//     per invitation).
//   - A temporary failure (4xx, timeout, network, DNS, TLS, AUTH) is
//     retried with exponential backoff, and after Config.MaxAttempts
//     attempts recorded as failed. A permanent one (5xx in the mail
//     transaction, an invalid address) is recorded as failed at once and
//     never retried. Either way the reason is in the ledger, where seatctl
//     shows it.
//   - A revoked, claimed, expired or superseded invitation is not sent;
//     its ledger entry becomes cancelled.
//   - Secrets stay out of logs and errors: the claim token travels only in
//     the email (and, in the development mail drop, in its one log line);
//     SMTP passwords are masked (RedactURL, SMTPSender.String). The token
//     is derived from the invitation's nonce with secret.Keys and checked
//     against the seat's stored hash before anything is sent.
//
// What it leaves to its caller: creating the stream and consumer
// (stream.SetupStreams), migrating the database, choosing the Sender
// (NewSender), and giving the Mailer the same secret key as the worker.
//
// Package mailtest holds an SMTP server for tests of this package and of
// the end-to-end tests above it.
package mailer
