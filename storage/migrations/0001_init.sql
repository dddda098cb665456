-- Provisioning: who sells, who buys, what was bought.
CREATE TABLE organizations (
    id                 uuid PRIMARY KEY,
    name               text NOT NULL,
    slug               text NOT NULL UNIQUE,
    seat_based_pricing boolean NOT NULL DEFAULT true,
    member_model       boolean NOT NULL DEFAULT false,
    created_at         timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE customers (
    id              uuid PRIMARY KEY,
    organization_id uuid NOT NULL REFERENCES organizations (id),
    email           text NOT NULL,
    external_id     text,
    created_at      timestamptz NOT NULL DEFAULT now()
);
-- Email lookups are case-insensitive; the unique index makes the
-- find-or-create of a customer by email safe under concurrency.
CREATE UNIQUE INDEX customers_org_email ON customers (organization_id, lower(email));
CREATE UNIQUE INDEX customers_org_external ON customers (organization_id, external_id) WHERE external_id IS NOT NULL;

CREATE TABLE members (
    id          uuid PRIMARY KEY,
    customer_id uuid NOT NULL REFERENCES customers (id),
    email       text NOT NULL,
    role        text NOT NULL CHECK (role IN ('owner', 'billing_manager', 'member')),
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX members_customer_email ON members (customer_id, lower(email));

-- A subscription or an order is a seat pool. seats_used counts its pending
-- and claimed seats; it only changes under the pool's row lock, and the
-- CHECK makes an oversell impossible even for a buggy writer.
CREATE TABLE subscriptions (
    id           uuid PRIMARY KEY,
    customer_id  uuid NOT NULL REFERENCES customers (id),
    product_name text NOT NULL,
    seats        integer NOT NULL CHECK (seats >= 0),
    seats_used   integer NOT NULL DEFAULT 0,
    status       text NOT NULL CHECK (status IN ('active', 'canceled')),
    created_at   timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT subscriptions_capacity CHECK (seats_used BETWEEN 0 AND seats)
);

CREATE TABLE orders (
    id           uuid PRIMARY KEY,
    customer_id  uuid NOT NULL REFERENCES customers (id),
    product_name text NOT NULL,
    seats        integer NOT NULL CHECK (seats >= 0),
    seats_used   integer NOT NULL DEFAULT 0,
    status       text NOT NULL CHECK (status IN ('paid', 'pending')),
    created_at   timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT orders_capacity CHECK (seats_used BETWEEN 0 AND seats)
);

CREATE TABLE checkouts (
    id              uuid PRIMARY KEY,
    customer_id     uuid NOT NULL REFERENCES customers (id),
    subscription_id uuid REFERENCES subscriptions (id),
    order_id        uuid REFERENCES orders (id),
    created_at      timestamptz NOT NULL DEFAULT now(),
    CHECK ((subscription_id IS NULL) <> (order_id IS NULL))
);

-- Sessions authenticate API callers. Only the SHA-256 of the token is kept.
CREATE TABLE sessions (
    id          uuid PRIMARY KEY,
    token_hash  bytea NOT NULL UNIQUE,
    customer_id uuid NOT NULL REFERENCES customers (id),
    member_id   uuid REFERENCES members (id),
    scopes      text[] NOT NULL,
    expires_at  timestamptz NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE seats (
    id                          uuid PRIMARY KEY,
    subscription_id             uuid REFERENCES subscriptions (id),
    order_id                    uuid REFERENCES orders (id),
    status                      text NOT NULL CHECK (status IN ('pending', 'claimed', 'revoked')),
    customer_id                 uuid REFERENCES customers (id),
    member_id                   uuid REFERENCES members (id),
    email                       text,
    -- holder identifies the occupant within the pool: the customer id, or
    -- the lower-cased email with the member model. See seats_one_per_holder.
    holder                      text,
    invitation_id               uuid,
    invitation_token_hash       bytea UNIQUE,
    invitation_token_expires_at timestamptz,
    claimed_at                  timestamptz,
    revoked_at                  timestamptz,
    seat_metadata               jsonb,
    inviter_email               text,
    version                     integer NOT NULL DEFAULT 1,
    created_at                  timestamptz NOT NULL DEFAULT now(),
    modified_at                 timestamptz,
    CHECK ((subscription_id IS NULL) <> (order_id IS NULL)),
    CHECK (status = 'revoked' OR holder IS NOT NULL)
);
-- One live seat per occupant per pool, enforced by the database.
CREATE UNIQUE INDEX seats_one_per_holder ON seats ((coalesce(subscription_id, order_id)), holder)
    WHERE status IN ('pending', 'claimed');
CREATE INDEX seats_subscription ON seats (subscription_id) WHERE subscription_id IS NOT NULL;
CREATE INDEX seats_order ON seats (order_id) WHERE order_id IS NOT NULL;
CREATE INDEX seats_pending_expiry ON seats (invitation_token_expires_at) WHERE status = 'pending';

-- Invitations and their delivery ledger. The token is never stored: it is
-- derived from nonce with the server's secret key, and the seat keeps its
-- SHA-256.
CREATE TABLE invitations (
    id             uuid PRIMARY KEY,
    seat_id        uuid NOT NULL REFERENCES seats (id),
    nonce          bytea NOT NULL,
    expires_at     timestamptz NOT NULL,
    delivery_state text NOT NULL DEFAULT 'queued'
        CHECK (delivery_state IN ('queued', 'sending', 'sent', 'failed', 'cancelled')),
    attempts       integer NOT NULL DEFAULT 0,
    last_error     text,
    sent_at        timestamptz,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX invitations_seat ON invitations (seat_id);

-- The request ledger: one row per request id, written as queued by the
-- ingress and completed by the worker in the same transaction as the seat
-- change. It makes the worker idempotent across redeliveries and keeps
-- outcomes (and Idempotency-Key replays) long after the dedupe window.
CREATE TABLE batches (
    id          uuid PRIMARY KEY,
    caller          text NOT NULL,
    size            integer NOT NULL,
    idempotency_key text,
    body_hash       bytea,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX batches_idempotency ON batches (caller, idempotency_key) WHERE idempotency_key IS NOT NULL;

CREATE TABLE requests (
    id              uuid PRIMARY KEY,
    op              text NOT NULL,
    -- caller scopes Idempotency-Keys and reads: a customer id, or
    -- "claim:<token hash>" for the unauthenticated claim.
    caller          text NOT NULL,
    idempotency_key text,
    body_hash       bytea,
    batch_id        uuid REFERENCES batches (id),
    batch_index     integer,
    payload         jsonb NOT NULL,
    status          text NOT NULL DEFAULT 'queued' CHECK (status IN ('queued', 'succeeded', 'failed')),
    code            text,
    result          jsonb,
    deliveries      integer NOT NULL DEFAULT 0,
    created_at      timestamptz NOT NULL DEFAULT now(),
    completed_at    timestamptz
);
CREATE UNIQUE INDEX requests_idempotency ON requests (caller, idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX requests_batch ON requests (batch_id, batch_index) WHERE batch_id IS NOT NULL;
CREATE INDEX requests_queued ON requests (created_at) WHERE status = 'queued';

-- Transactional outbox: seat events and mail requests are written in the
-- transaction that changes the seat and published to JetStream by the
-- relay, with the row's msg_id as Nats-Msg-Id.
CREATE TABLE outbox (
    id         bigserial PRIMARY KEY,
    subject    text NOT NULL,
    msg_id     text NOT NULL,
    payload    jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
