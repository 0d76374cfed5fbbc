-- The relay is woken only by outbox rows it may take now. A command the gateway keeps as
-- a safety net (available after a grace period, normally marked published a moment
-- later) used to wake it for an empty pass on every request; once such a row is due,
-- the relay's slow poll finds it, as it did before (the wake-up came too early for it).
-- A row trigger with a WHEN clause: rows that are not due do not even call the function,
-- and the notifications of one transaction are folded into one by PostgreSQL.
DROP TRIGGER outbox_inserted ON outbox;
CREATE TRIGGER outbox_inserted AFTER INSERT ON outbox
    FOR EACH ROW WHEN (NEW.available_at <= now()) EXECUTE FUNCTION outbox_notify();
