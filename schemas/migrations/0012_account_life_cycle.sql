-- The account life cycle (SPEC §10): login sessions, lock-out after failed logins,
-- password recovery tokens. Tokens are stored only as SHA-256 hashes.

-- One row per access token handed out by login (or activation). A sliding token's
-- expiry moves forward by `ttl` with each use; a password change revokes them all.
CREATE TABLE user_sessions (
    id         uuid PRIMARY KEY,
    tenant_id  uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    user_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    token_hash bytea NOT NULL UNIQUE,
    sliding    boolean NOT NULL DEFAULT false,
    ttl        interval NOT NULL,
    expires_at timestamptz NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz
);
CREATE INDEX user_sessions_user ON user_sessions (user_id);
CREATE INDEX user_sessions_tenant ON user_sessions (tenant_id);

-- Failed logins count within a window that starts at the first failure; enough of them
-- lock the account until `locked_until` (a timed lock-out, apart from an administrator's
-- `is_locked_out`).
ALTER TABLE users
    ADD COLUMN failed_logins         integer NOT NULL DEFAULT 0,
    ADD COLUMN first_failed_login_at timestamptz,
    ADD COLUMN locked_until          timestamptz,
    ADD COLUMN last_login_at         timestamptz;

-- Accounts created by an administrator (the back office) come from a third source.
ALTER TABLE users DROP CONSTRAINT users_source_check;
ALTER TABLE users ADD CONSTRAINT users_source_check
    CHECK (source IN ('self', 'invitation', 'admin'));

-- Single-use recovery tokens. The token itself is derived by the worker and the mailer
-- from the row id under a worker secret (like activation tokens): never stored.
CREATE TABLE password_recovery_tokens (
    id          uuid PRIMARY KEY,
    user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    token_hash  bytea NOT NULL UNIQUE,
    recover_url text NOT NULL,
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz,
    -- The reset command that consumed the token: tells its caller 200 from 409.
    used_by     uuid,
    revoked_at  timestamptz,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX password_recovery_tokens_user ON password_recovery_tokens (user_id);

-- What the gateway authorized, for the worker to check before it acts: a password change,
-- a reset or an account deletion is applied only if its command's id is here, written by
-- the gateway after it checked the caller's token and password. A command forged on the
-- broker names no such row and changes nothing (SPEC: decide from our own data).
CREATE TABLE account_requests (
    id         uuid PRIMARY KEY,  -- the command's CloudEvents id
    tenant_id  uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    user_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind       text NOT NULL CHECK (kind IN ('reset', 'change', 'delete')),
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX account_requests_tenant ON account_requests (tenant_id);
CREATE INDEX account_requests_user ON account_requests (user_id);
