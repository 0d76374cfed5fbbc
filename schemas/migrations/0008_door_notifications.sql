-- The door's notifications (issue 10).
--
-- 1. Gateways cache tenants and access tokens by key hash; any change to either table
--    tells them to forget what they cached (service.tenant_cache), so a revoked key or
--    token stops working at once, as it did when every request read the table.
CREATE FUNCTION tenants_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('registrar_tenants', '');
    RETURN NULL;
END;
$$;
CREATE TRIGGER tenants_changed AFTER UPDATE OR DELETE OR TRUNCATE ON tenants
    FOR EACH STATEMENT EXECUTE FUNCTION tenants_changed();
CREATE TRIGGER access_tokens_changed AFTER UPDATE OR DELETE OR TRUNCATE ON access_tokens
    FOR EACH STATEMENT EXECUTE FUNCTION tenants_changed();

-- 2. The outbox relay is woken only by rows it may publish now. A gateway's command is
--    kept for a grace period (available_at in the future) and normally marked published
--    before then; waking the relay for it was a wasted pass per gateway statement. Rows
--    whose time comes later are found by the relay's slow poll, as before.
DROP TRIGGER outbox_inserted ON outbox;
CREATE OR REPLACE FUNCTION outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM inserted WHERE available_at <= now()) THEN
        PERFORM pg_notify('registrar_outbox', '');
    END IF;
    RETURN NULL;
END;
$$;
CREATE TRIGGER outbox_inserted AFTER INSERT ON outbox
    REFERENCING NEW TABLE AS inserted
    FOR EACH STATEMENT EXECUTE FUNCTION outbox_notify();
