-- Every foreign key gets an index led by its columns: deleting a user, role or tenant
-- (ON DELETE CASCADE / SET NULL) and joining by these keys must not scan whole tables as
-- they grow to millions of rows. tests/integration/test_schema_indexes.py keeps it so.
CREATE INDEX IF NOT EXISTS access_tokens_tenant_id ON access_tokens (tenant_id);
CREATE INDEX IF NOT EXISTS registration_requests_user_id ON registration_requests (user_id);
CREATE INDEX IF NOT EXISTS activation_tokens_user_id ON activation_tokens (user_id);
CREATE INDEX IF NOT EXISTS user_roles_role_id ON user_roles (role_id);
CREATE INDEX IF NOT EXISTS captcha_solutions_tenant_id ON captcha_solutions (tenant_id);
CREATE INDEX IF NOT EXISTS invitations_tenant_id ON invitations (tenant_id);
CREATE INDEX IF NOT EXISTS invitations_role_id ON invitations (role_id);
CREATE INDEX IF NOT EXISTS invitations_user_id ON invitations (user_id);
CREATE INDEX IF NOT EXISTS invite_requests_tenant_id ON invite_requests (tenant_id);
