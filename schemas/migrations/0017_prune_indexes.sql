-- Pruning (issue 13, service/prune.py, docs/pruning.md): `registrar prune` and the outbox
-- worker delete rows past their retention in small batches, each batch found by the age
-- column that decides it. Without these indexes every batch would scan a whole table that
-- grows by a row or more per registration (tests/integration/test_prune.py EXPLAINs each
-- statement). Columns that rows are updated in (status, used_at, ...) stay out of the
-- plain indexes, so that those updates stay HOT where they were.

-- Every message a worker applied; the pruner deletes by age.
CREATE INDEX IF NOT EXISTS processed_messages_processed_at ON processed_messages (processed_at);

-- Decided requests (their Idempotency-Key and status resource) go after
-- REGISTRAR_RETENTION_REQUESTS_S; undecided ones (pending, or failed and waiting for a
-- dead-letter replay) after REGISTRAR_RETENTION_PARKED_S.
CREATE INDEX IF NOT EXISTS registration_requests_decided ON registration_requests (decided_at)
    WHERE status IN ('registered', 'rejected');
CREATE INDEX IF NOT EXISTS registration_requests_undecided ON registration_requests (created_at)
    WHERE status IN ('pending', 'failed');
CREATE INDEX IF NOT EXISTS invite_requests_created_at ON invite_requests (created_at);
CREATE INDEX IF NOT EXISTS account_requests_created_at ON account_requests (created_at);

-- Tokens, invitations and sessions go REGISTRAR_RETENTION_TOKENS_S after they expire.
-- Activation tokens are pruned newest first with a (expires_at, id) cursor: the newest
-- token of a user still awaiting activation stays (a resend reuses its URL).
CREATE INDEX IF NOT EXISTS activation_tokens_expires ON activation_tokens (expires_at, id);
CREATE INDEX IF NOT EXISTS password_recovery_tokens_expires
    ON password_recovery_tokens (expires_at);
CREATE INDEX IF NOT EXISTS invitations_expires ON invitations (expires_at);
CREATE INDEX IF NOT EXISTS user_sessions_expires ON user_sessions (expires_at);

-- Sent and failed emails, newest first with a cursor: some must stay for the resend
-- throttle (service/prune.py says which).
CREATE INDEX IF NOT EXISTS emails_created ON emails (created_at, id);

-- Delivered webhook deliveries go with the outbox's retention, parked ones after
-- REGISTRAR_RETENTION_PARKED_S; then the outbox rows they referred to may go.
CREATE INDEX IF NOT EXISTS webhook_deliveries_delivered ON webhook_deliveries (delivered_at)
    WHERE status = 'delivered';
CREATE INDEX IF NOT EXISTS webhook_deliveries_parked_at ON webhook_deliveries (parked_at)
    WHERE status = 'parked';

-- Published outbox rows, newest first with a cursor (a row a delivery still refers to
-- stays). Unpublished and parked rows are never pruned.
CREATE INDEX IF NOT EXISTS outbox_published ON outbox (published_at, id)
    WHERE published_at IS NOT NULL;
