-- Surviving failures: claimed side effects, parked outbox rows, commands kept until the
-- broker has confirmed them.

-- An email is claimed ('sending', with a lease) in a committed transaction before the SMTP
-- conversation starts; a copy that finds a live claim does not send. An expired lease
-- means its holder died: the next copy may take it over (the one documented duplicate
-- window, counted in registrar_email_lease_takeovers_total).
ALTER TABLE emails DROP CONSTRAINT emails_status_check;
ALTER TABLE emails ADD CONSTRAINT emails_status_check
    CHECK (status IN ('pending', 'sending', 'sent', 'failed'));
ALTER TABLE emails ADD COLUMN lease_until timestamptz;

-- The relay retries a row that cannot be published a few times, then parks it with its
-- error so that nothing waits behind it. `available_at` lets a producer that publishes
-- by itself (the gateway) leave the row to the relay only if it does not manage to.
ALTER TABLE outbox
    ADD COLUMN attempts     integer NOT NULL DEFAULT 0,
    ADD COLUMN last_error   text,
    ADD COLUMN parked_at    timestamptz,
    ADD COLUMN available_at timestamptz NOT NULL DEFAULT now();
DROP INDEX outbox_unpublished;
CREATE INDEX outbox_unpublished ON outbox (available_at, id)
    WHERE published_at IS NULL AND parked_at IS NULL;

-- A registration whose command was dead-lettered (it could not be processed) is 'failed'
-- instead of pending forever; `registrar dlq replay` brings it back to life.
ALTER TABLE registration_requests DROP CONSTRAINT registration_requests_status_check;
ALTER TABLE registration_requests ADD CONSTRAINT registration_requests_status_check
    CHECK (status IN ('pending', 'registered', 'rejected', 'failed'));
