-- The resend throttle (REGISTRAR_RESEND_INTERVAL_S) looks up the latest emails of one
-- kind to one address of a tenant.
CREATE INDEX IF NOT EXISTS emails_tenant_recipient_kind
    ON emails (tenant_id, lower(recipient), kind, created_at DESC);
