-- Webhooks (package webhook): endpoints per organization, the seat events
-- taken from SEATD_SEAT_EVENTS, one delivery per event and endpoint, and
-- every HTTP attempt of a delivery.

CREATE TABLE webhook_endpoints (
    id              uuid PRIMARY KEY,
    organization_id uuid NOT NULL REFERENCES organizations (id),
    url             text NOT NULL,
    events          text[] NOT NULL,
    -- The signing secret, sealed with AES-256-GCM under a key derived from
    -- SEATD_SECRET_KEY: 12-byte nonce || ciphertext, the endpoint id as
    -- additional data. It cannot be a hash: it must sign every delivery.
    secret_sealed   bytea NOT NULL,
    enabled         boolean NOT NULL DEFAULT true,
    -- Failures before enabled_at do not count toward disabling again.
    enabled_at      timestamptz NOT NULL DEFAULT now(),
    disabled_at     timestamptz,
    disabled_reason text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    modified_at     timestamptz,
    deleted_at      timestamptz
);
CREATE INDEX webhook_endpoints_org ON webhook_endpoints (organization_id) WHERE deleted_at IS NULL;

-- Every seat event the webhook role took from the stream, whether or not an
-- endpoint wanted it: a delivery of a seat's version N waits until versions
-- 1..N-1 are here (or a guard time passed), so replicas that take a seat's
-- events out of order still deliver them in order.
CREATE TABLE webhook_events (
    id              uuid PRIMARY KEY, -- the seat event's id
    seat_id         uuid NOT NULL,
    version         integer NOT NULL,
    type            text NOT NULL,
    organization_id uuid,
    body            bytea NOT NULL,   -- the exact HTTP body, the same for every endpoint and attempt
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX webhook_events_seat ON webhook_events (seat_id, version);

-- One row per event and endpoint: its id is the webhook-id header.
CREATE TABLE webhook_deliveries (
    id               uuid PRIMARY KEY,
    endpoint_id      uuid NOT NULL REFERENCES webhook_endpoints (id),
    event_id         uuid NOT NULL REFERENCES webhook_events (id),
    seat_id          uuid NOT NULL,
    seat_version     integer NOT NULL,
    status           text NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'succeeded', 'failed', 'skipped')),
    attempts         integer NOT NULL DEFAULT 0, -- attempts started since created or redelivered
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    -- Set while a dispatcher holds the delivery; a dispatcher that died
    -- mid-attempt loses it when the lease runs out.
    leased_until     timestamptz,
    last_status_code integer,
    last_error       text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    completed_at     timestamptz,
    UNIQUE (endpoint_id, event_id)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_seat ON webhook_deliveries (endpoint_id, seat_id, seat_version) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_completed ON webhook_deliveries (endpoint_id, completed_at DESC)
    WHERE status IN ('succeeded', 'failed');
CREATE INDEX webhook_deliveries_endpoint ON webhook_deliveries (endpoint_id, created_at DESC);

CREATE TABLE webhook_attempts (
    id          bigserial PRIMARY KEY,
    delivery_id uuid NOT NULL REFERENCES webhook_deliveries (id),
    started_at  timestamptz NOT NULL,
    duration_ms integer NOT NULL,
    status_code integer, -- NULL: no response (timeout, refused, ...)
    error       text,    -- NULL: a 2xx
    response    text     -- the first KiB of the response body
);
CREATE INDEX webhook_attempts_delivery ON webhook_attempts (delivery_id, id);
