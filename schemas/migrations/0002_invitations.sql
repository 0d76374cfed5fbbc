-- Organization invitations (Blynk style). The token is stored only as a SHA-256 hash.

CREATE TABLE invitations (
    id          uuid PRIMARY KEY,
    tenant_id   uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    -- The InviteRequested that created it: a redelivered or retried request is a no-op.
    request_id  uuid NOT NULL UNIQUE,
    email       text NOT NULL,
    locale      text NOT NULL,
    name        text,
    role_id     uuid REFERENCES roles (id) ON DELETE SET NULL,
    token_hash  bytea NOT NULL UNIQUE,
    status      text NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'revoked', 'accepted')),
    expires_at  timestamptz NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    accepted_at timestamptz,
    -- The accept command that decided it, and how ('accepted' or 'email_taken'): tells
    -- the waiting gateway its own outcome from someone else's.
    decided_by  uuid,
    decision    text CHECK (decision IN ('accepted', 'email_taken')),
    user_id     uuid REFERENCES users (id) ON DELETE SET NULL
);
-- At most one live invitation per address and tenant: inviting again revokes the older.
CREATE UNIQUE INDEX invitations_one_pending ON invitations (tenant_id, lower(email))
    WHERE status = 'pending';

-- Idempotency-Key bookkeeping for the invitation POSTs.
CREATE TABLE invite_requests (
    id               uuid PRIMARY KEY,
    tenant_id        uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    idempotency_key  text NOT NULL,
    body_fingerprint bytea NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, idempotency_key)
);
