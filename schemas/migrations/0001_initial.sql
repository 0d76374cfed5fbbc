-- registrar: initial schema.
-- Secrets (API keys, bearer tokens, activation tokens) are stored only as SHA-256 hashes;
-- passwords only as argon2id hashes.

CREATE TABLE tenants (
    id                      uuid PRIMARY KEY,
    name                    text NOT NULL,
    api_key_hash            bytea NOT NULL UNIQUE,
    api_key_revoked_at      timestamptz,
    registration_enabled    boolean NOT NULL DEFAULT true,
    captcha                 text NOT NULL DEFAULT 'none' CHECK (captcha IN ('none', 'pow')),
    activation_url_prefixes text[] NOT NULL DEFAULT '{}',
    duplicates              text NOT NULL DEFAULT 'conflict'
                                CHECK (duplicates IN ('conflict', 'silent')),
    default_locale          text NOT NULL DEFAULT 'en',
    -- Random per-tenant key for captcha signatures and idempotency fingerprints.
    secret                  bytea NOT NULL,
    created_at              timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE access_tokens (
    id          uuid PRIMARY KEY,
    tenant_id   uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    token_hash  bytea NOT NULL UNIQUE,
    scopes      text[] NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);

CREATE TABLE roles (
    id          uuid PRIMARY KEY,
    tenant_id   uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name        text NOT NULL,
    description text NOT NULL DEFAULT ''
);
CREATE UNIQUE INDEX roles_tenant_name ON roles (tenant_id, lower(name));

CREATE TABLE users (
    id                 uuid PRIMARY KEY,
    tenant_id          uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    user_name          text NOT NULL,
    email              text NOT NULL,
    name               text NOT NULL DEFAULT '',
    password_hash      text NOT NULL,
    locale             text NOT NULL,
    is_approved        boolean NOT NULL DEFAULT false,
    is_locked_out      boolean NOT NULL DEFAULT false,
    dashboard_settings jsonb NOT NULL DEFAULT '{}'::jsonb,
    source             text NOT NULL CHECK (source IN ('self', 'invitation')),
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now()
);
-- The 409 case: both are unique per tenant, case-insensitively. Two racing workers
-- cannot both insert: the second blocks on the index and then fails.
CREATE UNIQUE INDEX users_tenant_email ON users (tenant_id, lower(email));
CREATE UNIQUE INDEX users_tenant_user_name ON users (tenant_id, lower(user_name));

CREATE TABLE user_roles (
    user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role_id uuid NOT NULL REFERENCES roles (id) ON DELETE CASCADE,
    PRIMARY KEY (user_id, role_id)
);

-- One row per accepted POST /{apiKey}/register; the status resource reads it.
CREATE TABLE registration_requests (
    id               uuid PRIMARY KEY,
    tenant_id        uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    idempotency_key  text,
    body_fingerprint bytea NOT NULL,
    status           text NOT NULL DEFAULT 'pending'
                         CHECK (status IN ('pending', 'registered', 'rejected')),
    user_id          uuid REFERENCES users (id) ON DELETE SET NULL,
    reason           text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    decided_at       timestamptz,
    UNIQUE (tenant_id, idempotency_key)
);

CREATE TABLE activation_tokens (
    id          uuid PRIMARY KEY,
    user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    token_hash  bytea NOT NULL UNIQUE,
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz,
    -- The activation command that consumed the token: tells its caller 200 from 409.
    used_by     uuid,
    revoked_at  timestamptz,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- A solved proof-of-work challenge may be used once.
CREATE TABLE captcha_solutions (
    challenge  text PRIMARY KEY,
    tenant_id  uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    expires_at timestamptz NOT NULL
);

CREATE TABLE emails (
    id         uuid PRIMARY KEY,
    tenant_id  uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    kind       text NOT NULL,
    recipient  text NOT NULL,
    status     text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sent', 'failed')),
    attempts   integer NOT NULL DEFAULT 0,
    sent_at    timestamptz,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Transactional outbox: written in the same transaction as the change it reports.
CREATE TABLE outbox (
    id           bigserial PRIMARY KEY,
    event_id     uuid NOT NULL UNIQUE,
    routing_key  text NOT NULL,
    body         jsonb NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    published_at timestamptz
);
CREATE INDEX outbox_unpublished ON outbox (id) WHERE published_at IS NULL;

CREATE FUNCTION outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('registrar_outbox', '');
    RETURN NULL;
END;
$$;
CREATE TRIGGER outbox_inserted AFTER INSERT ON outbox
    FOR EACH STATEMENT EXECUTE FUNCTION outbox_notify();

-- Consumers record each message id they applied, in the same transaction.
CREATE TABLE processed_messages (
    consumer     text NOT NULL,
    message_id   uuid NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, message_id)
);
