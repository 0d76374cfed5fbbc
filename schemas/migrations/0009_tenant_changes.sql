-- Gateways cache tenants and access tokens by key hash; any change to either table
-- tells them to forget what they cached (service.tenant_cache), so a revoked key or
-- token stops working as soon as the notification arrives (milliseconds after the commit).
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
