-- Used captcha solutions are kept until they expire, and every request that uses one
-- deletes the expired ones (service.intake, service.captcha): by expiry, not by scanning
-- the whole table, which holds every solution of the last ten minutes (found by
-- `make bench-scale`'s EXPLAIN of the gateway's statement).
CREATE INDEX IF NOT EXISTS captcha_solutions_expires_at ON captcha_solutions (expires_at);
