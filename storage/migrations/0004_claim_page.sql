-- The claim page (issue 12) tells an invitee what became of their link:
-- claimed, expired, revoked or replaced by a newer one. A seat forgets its
-- token hash once the invitation is used or replaced, so each invitation
-- keeps the SHA-256 of its own token (never the token) to be recognised
-- later. Invitations written before this migration only have it when they
-- are still their seat's live one.
ALTER TABLE invitations ADD COLUMN token_hash bytea;
UPDATE invitations i SET token_hash = s.invitation_token_hash
    FROM seats s WHERE s.invitation_id = i.id AND s.invitation_token_hash IS NOT NULL;
CREATE UNIQUE INDEX invitations_token_hash ON invitations (token_hash) WHERE token_hash IS NOT NULL;

-- Where an organization sends an invitee after a claim (absolute https,
-- or http on localhost); NULL: the claim page explains what comes next.
ALTER TABLE organizations ADD COLUMN claim_return_url text;
