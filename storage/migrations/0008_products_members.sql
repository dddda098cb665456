-- Products (issue 11): what a subscription or an order is for, with an id
-- of its own, so every product_id seatd answers is a product's id.
-- recurring_interval NULL: a one-time product.
CREATE TABLE products (
    id                       uuid PRIMARY KEY,
    organization_id          uuid NOT NULL REFERENCES organizations (id),
    name                     text NOT NULL,
    description              text,
    recurring_interval       text CHECK (recurring_interval IN ('day', 'week', 'month', 'year')),
    recurring_interval_count integer CHECK (recurring_interval_count > 0),
    created_at               timestamptz NOT NULL DEFAULT now(),
    modified_at              timestamptz,
    CHECK ((recurring_interval IS NULL) = (recurring_interval_count IS NULL))
);
CREATE INDEX products_org ON products (organization_id, created_at, id);

-- One product per distinct (organization, product_name) of the pools that
-- exist, as old as its oldest pool: monthly when a subscription names it,
-- one-time when only orders do.
INSERT INTO products (id, organization_id, name, recurring_interval, recurring_interval_count, created_at)
SELECT gen_random_uuid(), org, name,
       CASE WHEN bool_or(recurring) THEN 'month' END, CASE WHEN bool_or(recurring) THEN 1 END, min(created)
FROM (
    SELECT c.organization_id AS org, s.product_name AS name, true AS recurring, s.created_at AS created
    FROM subscriptions s JOIN customers c ON c.id = s.customer_id
    UNION ALL
    SELECT c.organization_id, o.product_name, false, o.created_at
    FROM orders o JOIN customers c ON c.id = o.customer_id
) pools
GROUP BY org, name;

ALTER TABLE subscriptions ADD COLUMN product_id uuid REFERENCES products (id);
UPDATE subscriptions s SET product_id = p.id FROM customers c, products p
    WHERE c.id = s.customer_id AND p.organization_id = c.organization_id AND p.name = s.product_name;
ALTER TABLE subscriptions ALTER COLUMN product_id SET NOT NULL;
ALTER TABLE subscriptions DROP COLUMN product_name;

ALTER TABLE orders ADD COLUMN product_id uuid REFERENCES products (id);
UPDATE orders o SET product_id = p.id FROM customers c, products p
    WHERE c.id = o.customer_id AND p.organization_id = c.organization_id AND p.name = o.product_name;
ALTER TABLE orders ALTER COLUMN product_id SET NOT NULL;
ALTER TABLE orders DROP COLUMN product_name;

-- What a subscription is, as Polar's clients read it. seatd bills nothing:
-- these are the operator's record. The current period is derived from
-- started_at and the interval. Existing subscriptions started when they
-- were created and renew monthly.
ALTER TABLE subscriptions
    ADD COLUMN amount                   integer NOT NULL DEFAULT 0 CHECK (amount >= 0),
    ADD COLUMN currency                 text NOT NULL DEFAULT 'usd',
    ADD COLUMN recurring_interval       text NOT NULL DEFAULT 'month'
        CHECK (recurring_interval IN ('day', 'week', 'month', 'year')),
    ADD COLUMN recurring_interval_count integer NOT NULL DEFAULT 1 CHECK (recurring_interval_count > 0),
    ADD COLUMN started_at               timestamptz,
    ADD COLUMN canceled_at              timestamptz,
    ADD COLUMN ended_at                 timestamptz,
    ADD COLUMN modified_at              timestamptz;
UPDATE subscriptions SET started_at = created_at;
ALTER TABLE subscriptions ALTER COLUMN started_at SET NOT NULL, ALTER COLUMN started_at SET DEFAULT now();

ALTER TABLE organizations ADD COLUMN modified_at timestamptz;

-- Members as Polar's Member: a name, and the id the seller's system knows
-- them by, unique within their customer.
ALTER TABLE members ADD COLUMN name text, ADD COLUMN external_id text, ADD COLUMN modified_at timestamptz;
CREATE UNIQUE INDEX members_customer_external ON members (customer_id, external_id) WHERE external_id IS NOT NULL;

-- The subscriptions in which a caller holds a claimed seat
-- (GET /v1/customer-portal/seats/subscriptions), by customer or by member.
CREATE INDEX seats_claimed_customer ON seats (customer_id) WHERE status = 'claimed';
CREATE INDEX seats_claimed_member ON seats (member_id) WHERE status = 'claimed';
