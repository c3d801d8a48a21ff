-- A manager's last sign of presence: their console's event stream open (refreshed by the gateway
-- while it is), or a `SetReady`. Ready slots of a manager absent longer than the gateway's
-- INBOX_READY_LAPSE_SECS lapse, so a manager who said "ready" and left stops receiving clients.
ALTER TABLE managers ADD COLUMN seen_at timestamptz;
UPDATE managers SET seen_at = updated_at;
