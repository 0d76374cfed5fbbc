-- The Baasic-shaped back office (SPEC §11): users listed page by page (sorted, filtered,
-- searched) on tenants of a million users, and users created by an administrator through
-- the registration worker.

-- Paging: a page deep into a large tenant skips its offset inside an index, never in the
-- table. Each sort order's index also carries what the listing reads and filters on
-- (the id, the approval and lock flags, and the raw userName or email, without which
-- PostgreSQL cannot read lower(...) from the index alone), so that skipping is an
-- index-only scan. The userName and email indexes stay the unique ones registration
-- relies on (same keys, same names).
CREATE UNIQUE INDEX users_tenant_user_name_paged ON users (tenant_id, lower(user_name))
    INCLUDE (id, user_name, is_approved, is_locked_out);
DROP INDEX users_tenant_user_name;
ALTER INDEX users_tenant_user_name_paged RENAME TO users_tenant_user_name;

CREATE UNIQUE INDEX users_tenant_email_paged ON users (tenant_id, lower(email))
    INCLUDE (id, email, is_approved, is_locked_out);
DROP INDEX users_tenant_email;
ALTER INDEX users_tenant_email_paged RENAME TO users_tenant_email;

CREATE INDEX users_tenant_created_paged ON users (tenant_id, created_at, id)
    INCLUDE (is_approved, is_locked_out);
DROP INDEX users_tenant_created;
ALTER INDEX users_tenant_created_paged RENAME TO users_tenant_created;

CREATE INDEX users_tenant_updated_paged ON users (tenant_id, updated_at, id)
    INCLUDE (is_approved, is_locked_out);
DROP INDEX users_tenant_updated;
ALTER INDEX users_tenant_updated_paged RENAME TO users_tenant_updated;

-- Locked users are few: listing only them reads these, in each sort order, instead of
-- skipping every other user's entry (the listing writes the filter out, so that the
-- planner can match these predicates).
CREATE INDEX users_locked_by_user_name ON users (tenant_id, lower(user_name))
    INCLUDE (id, user_name, is_approved) WHERE is_locked_out;
CREATE INDEX users_locked_by_email ON users (tenant_id, lower(email))
    INCLUDE (id, email, is_approved) WHERE is_locked_out;
CREATE INDEX users_locked_by_created ON users (tenant_id, created_at, id)
    INCLUDE (is_approved) WHERE is_locked_out;
CREATE INDEX users_locked_by_updated ON users (tenant_id, updated_at, id)
    INCLUDE (is_approved) WHERE is_locked_out;

-- searchQuery: a phrase matched case-insensitively anywhere in userName, email or name.
-- One trigram index over the three, joined by a unit separator (U+001F), which a search
-- phrase may not contain, so that a match never spans two fields.
CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE INDEX users_search ON users
    USING gin ((user_name || E'\x1f' || email || E'\x1f' || name) gin_trgm_ops);

-- totalRecords without counting a million rows: the users of each tenant, approved,
-- locked and both, kept by statement triggers in the transaction that changes them. A
-- transaction adds to one of 16 rows per tenant (by its id), so concurrent registrations
-- seldom wait for each other's counter row; a total is the sum of those rows.
-- No foreign key: a tenant's deletion cascades to its users, whose trigger then counts
-- for a tenant already gone (the orphaned rows are harmless).
CREATE TABLE user_counts (
    tenant_id       uuid NOT NULL,
    slot            smallint NOT NULL,
    users           bigint NOT NULL DEFAULT 0,
    approved        bigint NOT NULL DEFAULT 0,
    locked          bigint NOT NULL DEFAULT 0,
    approved_locked bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, slot)
);

CREATE TYPE user_count_change AS (tenant_id uuid, approved boolean, locked boolean, sign int);

CREATE FUNCTION user_counts_changed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    changes user_count_change[] := '{}';
BEGIN
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        changes := changes || ARRAY(SELECT ROW(tenant_id, is_approved, is_locked_out, 1)
                                           ::user_count_change FROM new_rows);
    END IF;
    IF TG_OP IN ('DELETE', 'UPDATE') THEN
        changes := changes || ARRAY(SELECT ROW(tenant_id, is_approved, is_locked_out, -1)
                                           ::user_count_change FROM old_rows);
    END IF;
    -- An update that changes neither flag (a login, a rename) nets out: nothing to write.
    INSERT INTO user_counts AS c (tenant_id, slot, users, approved, locked, approved_locked)
    SELECT tenant_id, txid_current() % 16,
           sum(sign),
           COALESCE(sum(sign) FILTER (WHERE approved), 0),
           COALESCE(sum(sign) FILTER (WHERE locked), 0),
           COALESCE(sum(sign) FILTER (WHERE approved AND locked), 0)
      FROM unnest(changes)
     GROUP BY tenant_id
    HAVING sum(sign) <> 0 OR sum(sign) FILTER (WHERE approved) <> 0
        OR sum(sign) FILTER (WHERE locked) <> 0
        OR sum(sign) FILTER (WHERE approved AND locked) <> 0
    ON CONFLICT (tenant_id, slot) DO UPDATE
       SET users = c.users + EXCLUDED.users,
           approved = c.approved + EXCLUDED.approved,
           locked = c.locked + EXCLUDED.locked,
           approved_locked = c.approved_locked + EXCLUDED.approved_locked;
    RETURN NULL;
END;
$$;

CREATE TRIGGER users_counted_insert AFTER INSERT ON users
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION user_counts_changed();
CREATE TRIGGER users_counted_update AFTER UPDATE ON users
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION user_counts_changed();
CREATE TRIGGER users_counted_delete AFTER DELETE ON users
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION user_counts_changed();

CREATE FUNCTION user_counts_truncated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM user_counts;
    RETURN NULL;
END;
$$;
CREATE TRIGGER users_counted_truncate AFTER TRUNCATE ON users
    FOR EACH STATEMENT EXECUTE FUNCTION user_counts_truncated();

-- Counted also when rows are loaded with triggers off for replication
-- (session_replication_role = replica, as pg_restore and bench/scale.py's seeding do).
ALTER TABLE users ENABLE ALWAYS TRIGGER users_counted_insert;
ALTER TABLE users ENABLE ALWAYS TRIGGER users_counted_update;
ALTER TABLE users ENABLE ALWAYS TRIGGER users_counted_delete;
ALTER TABLE users ENABLE ALWAYS TRIGGER users_counted_truncate;

INSERT INTO user_counts (tenant_id, slot, users, approved, locked, approved_locked)
SELECT tenant_id, 0, count(*), count(*) FILTER (WHERE is_approved),
       count(*) FILTER (WHERE is_locked_out), count(*) FILTER (WHERE is_approved AND is_locked_out)
  FROM users
 GROUP BY tenant_id;

-- A user created by an administrator (POST /{apiKey}/users) is a registration request
-- like any other, carried out by the registration worker; what the administrator
-- decided (name, roles, approval, notification) is recorded with the request by the
-- gateway after checking the tenant token, and the worker reads it from here, never
-- from the command: a command forged on the broker cannot make itself an administrator's.
-- NULL for self-registration.
ALTER TABLE registration_requests ADD COLUMN admin jsonb;
