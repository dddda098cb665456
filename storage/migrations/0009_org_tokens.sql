-- Organization access tokens (seatctl token create): the credential of an
-- organization's backend on the organization API (/v1/customer-seats).
-- Only a keyed hash of the token is kept, HMAC-SHA256 under a key derived
-- from SEATD_SECRET_KEY (secret.Keys.AccessTokenHash), as Polar keeps
-- HMAC-SHA256(SECRET, token); the token itself is shown once, on creation.
CREATE TABLE org_tokens (
    id              uuid PRIMARY KEY,
    organization_id uuid NOT NULL REFERENCES organizations (id),
    token_hash      bytea NOT NULL UNIQUE CHECK (length(token_hash) = 32),
    -- Polar's names; at least one.
    scopes          text[] NOT NULL CHECK (cardinality(scopes) > 0
                        AND scopes <@ ARRAY['customer_seats:read', 'customer_seats:write']),
    comment         text NOT NULL DEFAULT '',
    expires_at      timestamptz, -- NULL: never
    revoked_at      timestamptz,
    -- Bookkeeping, kept to the minute: written at most once a minute per
    -- token, not on every request.
    last_used_at    timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX org_tokens_org ON org_tokens (organization_id, created_at);
