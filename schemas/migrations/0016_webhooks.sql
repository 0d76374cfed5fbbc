-- Webhooks (SPEC §11): a tenant's endpoints, and one delivery per endpoint and public
-- event, written by a trigger in the same transaction as the event's outbox row.
--
-- Deliveries are driven by our own table, never by the public exchange: publishing
-- anything to `{prefix}.events` must not make a worker act (SPEC §5), and a forged event
-- there would otherwise be signed and delivered to tenants.

CREATE TABLE webhook_endpoints (
    id              uuid PRIMARY KEY,
    tenant_id       uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    url             text NOT NULL,
    -- Routing keys of the public events wanted; NULL: every public event.
    event_types     text[],
    -- The `whsec_…` signing secret, sealed to REGISTRAR_SEAL_PUBLIC_KEY (service/sealing.py):
    -- the webhooks worker opens it with the private key; it is never stored in plaintext.
    sealed_secret   text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    -- A 410 from the receiver disables the endpoint (`webhook replay` enables it again).
    disabled_at     timestamptz,
    disabled_reason text,
    -- Failed attempts in a row, and while there are any, no attempt before `retry_at`
    -- (one at a time): a dead receiver costs one probe per backoff, not one per event.
    failures        integer NOT NULL DEFAULT 0,
    retry_at        timestamptz,
    last_error      text,
    -- When a dispatcher last took deliveries of it: endpoints are served round robin.
    served_at       timestamptz
);
CREATE INDEX webhook_endpoints_tenant ON webhook_endpoints (tenant_id, created_at);

-- The routing keys a webhook may receive: the public events (schemas.events.PUBLIC_EVENTS;
-- the webhooks worker adds any a newer version defines when it starts). Commands are
-- never delivered.
CREATE TABLE webhook_event_types (
    routing_key text PRIMARY KEY
);
INSERT INTO webhook_event_types (routing_key) VALUES
    ('user.registered'), ('user.activated'), ('registration.rejected'),
    ('invitation.sent'), ('invitation.accepted'),
    ('user.password_changed'), ('user.updated'), ('user.locked'), ('user.unlocked'),
    ('user.deleted'), ('email.delivered'), ('email.failed');

-- One row per (endpoint, event). The body is the outbox row's, read at delivery time.
--
-- Pruning the outbox (issue 13): a delivery refers to its event's outbox row, and the
-- foreign key refuses to delete a row a delivery still refers to. A pruner deletes
-- delivered deliveries first (`status = 'delivered' AND delivered_at < cutoff`), then
-- outbox rows no delivery refers to; rows of pending or parked deliveries stay until
-- those are delivered or their endpoint is removed.
CREATE TABLE webhook_deliveries (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    endpoint_id     uuid NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    outbox_id       bigint NOT NULL REFERENCES outbox (id),
    event_id        uuid NOT NULL,
    routing_key     text NOT NULL,
    status          text NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'delivered', 'parked')),
    attempts        integer NOT NULL DEFAULT 0,
    created_at      timestamptz NOT NULL DEFAULT now(),
    -- Retries go on for REGISTRAR_WEBHOOK_RETRY_FOR_S from here (reset by a replay).
    retry_from      timestamptz NOT NULL DEFAULT now(),
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    -- A claim: the dispatcher holding it may be mid-request until `lease_until`; after
    -- that another one may take the delivery over (at least once; `webhook-id` lets the
    -- receiver drop the copy).
    lease_until     timestamptz,
    lease_id        uuid,
    last_status     integer,
    last_error      text,
    delivered_at    timestamptz,
    parked_at       timestamptz,
    UNIQUE (endpoint_id, event_id)
);
CREATE INDEX webhook_deliveries_outbox ON webhook_deliveries (outbox_id);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (endpoint_id, next_attempt_at)
    WHERE status = 'pending';
CREATE INDEX webhook_deliveries_leased ON webhook_deliveries (endpoint_id)
    WHERE lease_until IS NOT NULL;
CREATE INDEX webhook_deliveries_parked ON webhook_deliveries (endpoint_id)
    WHERE status = 'parked';

-- The fan-out: each public event of a tenant becomes a delivery for each of the tenant's
-- enabled endpoints whose filter it passes, in the transaction that records the event.
-- Rows that are not public events (commands) leave after one primary-key probe.
CREATE FUNCTION webhook_fan_out() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    tenant text;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM webhook_event_types WHERE routing_key = NEW.routing_key) THEN
        RETURN NULL;
    END IF;
    tenant := NEW.body -> 'data' ->> 'tenantId';
    IF tenant IS NULL
       OR tenant !~ '^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$'
    THEN
        RETURN NULL;
    END IF;
    INSERT INTO webhook_deliveries (endpoint_id, outbox_id, event_id, routing_key)
    SELECT e.id, NEW.id, NEW.event_id, NEW.routing_key
      FROM webhook_endpoints e
     WHERE e.tenant_id = tenant::uuid
       AND e.disabled_at IS NULL
       AND (e.event_types IS NULL OR NEW.routing_key = ANY (e.event_types));
    IF FOUND THEN
        PERFORM pg_notify('registrar_webhooks', '');
    END IF;
    RETURN NULL;
END;
$$;
CREATE TRIGGER outbox_webhooks AFTER INSERT ON outbox
    FOR EACH ROW EXECUTE FUNCTION webhook_fan_out();
