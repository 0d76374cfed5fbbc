-- Commands are private (issue 9): `email.requested` carries only emailId and tenantId.
-- The mailer renders from its own row, so the row holds everything rendering needs: the
-- locale and the kind's parameters (user_name, name, activation_url,
-- activation_token_id, invitation_id, expires_at, user_created_at, ... never a secret:
-- tokens are re-derived from the ids under the workers' secret).
-- Rows written before this migration have a NULL locale (the tenant's default applies)
-- and empty params.
ALTER TABLE emails
    ADD COLUMN locale text,
    ADD COLUMN params jsonb NOT NULL DEFAULT '{}';
