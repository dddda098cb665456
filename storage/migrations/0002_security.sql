-- The request ledger keeps each request as the exact text that was
-- published (json, not jsonb): jsonb rewrites numbers (1e2 -> 100) and
-- reorders keys, so a request the requeuer re-published could grow past
-- the limits it was accepted under.
ALTER TABLE requests ALTER COLUMN payload TYPE json USING payload::text::json;

-- One mailbox, one key: email_key is the address as compared (lower-case
-- local part @ the IDNA ASCII form of the domain, see events.ParseEmail);
-- email keeps what the user typed, for display. ASCII addresses are keyed
-- here; the migration step in Go (storage/migrate.go) keys the rest, then
-- makes the column NOT NULL.
ALTER TABLE customers ADD COLUMN email_key text;
ALTER TABLE members ADD COLUMN email_key text;
UPDATE customers SET email_key = lower(btrim(email, ' ')) WHERE email ~ '^[ -~]*$';
UPDATE members SET email_key = lower(btrim(email, ' ')) WHERE email ~ '^[ -~]*$';

-- Earlier rows may already hold one mailbox twice (with and without
-- surrounding spaces): the oldest keeps the key, the others are marked so
-- the unique index can be built; nothing is deleted.
UPDATE customers c SET email_key = c.email_key || ' #duplicate ' || c.id
FROM customers o
WHERE o.organization_id = c.organization_id AND o.email_key = c.email_key
  AND (o.created_at, o.id) < (c.created_at, c.id);
UPDATE members m SET email_key = m.email_key || ' #duplicate ' || m.id
FROM members o
WHERE o.customer_id = m.customer_id AND o.email_key = m.email_key
  AND (o.created_at, o.id) < (m.created_at, m.id);

DROP INDEX customers_org_email;
DROP INDEX members_customer_email;
CREATE UNIQUE INDEX customers_org_email_key ON customers (organization_id, email_key);
CREATE UNIQUE INDEX members_customer_email_key ON members (customer_id, email_key);

-- A session created by claiming a seat ends when the seat is revoked.
ALTER TABLE sessions ADD COLUMN seat_id uuid REFERENCES seats (id);
CREATE INDEX sessions_seat ON sessions (seat_id) WHERE seat_id IS NOT NULL;

-- seatd always writes email_key itself; a row inserted by hand (psql, an
-- old replica during a rolling upgrade) gets the ASCII form rather than
-- failing.
CREATE FUNCTION default_email_key() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.email_key IS NULL THEN
        NEW.email_key := lower(btrim(NEW.email, ' '));
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER customers_email_key BEFORE INSERT ON customers FOR EACH ROW EXECUTE FUNCTION default_email_key();
CREATE TRIGGER members_email_key BEFORE INSERT ON members FOR EACH ROW EXECUTE FUNCTION default_email_key();
