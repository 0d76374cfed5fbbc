-- Browser origins allowed to call a tenant's API cross-origin (CORS, SPEC §3), as
-- service.origins normalizes them: scheme://host[:port].
ALTER TABLE tenants ADD COLUMN allowed_origins text[] NOT NULL DEFAULT '{}';
