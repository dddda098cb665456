// Package webhook delivers seat events to organizations' HTTP endpoints,
// the way Polar sends its customer_seat.* webhooks.
//
// It owns webhook endpoints (URL, subscribed event types, a whsec_ secret
// sealed at rest), the durable consumer Consumer on
// events.SeatEventsStream, and the delivery log in Postgres
// (webhook_events, webhook_deliveries, webhook_attempts; migration
// 0007_webhooks). A Runner ingests each seat event into one delivery per
// subscribed endpoint and sends due deliveries; Admin is what operators
// do (seatctl webhook ...).
//
// What it promises:
//
//   - At least once. A stream message is acknowledged only after its
//     deliveries are committed; a delivery is retried until a 2xx, or
//     MaxAttempts attempts (timeouts, network errors and any other status,
//     3xx included, are failures), with exponential backoff from RetryBase
//     to RetryMax. A Runner that dies mid-attempt loses its lease and
//     another repeats the attempt.
//   - A stable webhook-id. Each (event, endpoint) pair gets one delivery
//     row on first sight of the event; its id is the webhook-id of every
//     attempt and redelivery, and the body is byte-identical each time. A
//     receiver that sees an id twice has seen a retry.
//   - Per-seat order. A seat's later event is not sent to an endpoint
//     before its earlier events have been delivered or given up on there,
//     even when replicas ingest them out of order (a delivery of version N
//     waits for versions 1..N-1 to be ingested, at most OrderGuard).
//   - Signatures per Standard Webhooks with Polar's key: webhook-signature
//     is v1,base64(HMAC-SHA256(secret, id.timestamp.body)) where the key is
//     the UTF-8 bytes of the whole whsec_ secret. Polar's SDK validateEvent
//     accepts it as is.
//   - An endpoint whose last DisableAfter completed deliveries (since it was
//     last enabled) all failed is disabled; its pending deliveries are
//     skipped and no new ones are queued until Admin.Enable. Redeliver
//     sends any delivery again under its own webhook-id.
//   - No secret in clear at rest or in logs: endpoint secrets are sealed
//     with AES-256-GCM under a key derived from the deployment's secret key
//     and shown once, when created or rotated.
//
// What it leaves to its caller: creating the stream (stream.SetupStreams),
// migrating the database, and giving every replica the same secret key.
package webhook
