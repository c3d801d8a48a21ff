-- The age of the oldest message still waiting for its AFC verdict (the workflow service's
-- `inbox_afc_pending_oldest_seconds` gauge, every 10 s): without this index that is a scan of every
-- message ever kept (`messages_afc_unsent` leaves out those already handed to the AFC system).
-- Only client messages are ever pending, so the index holds the few in flight.
-- Never edit an applied migration.
CREATE INDEX messages_afc_pending ON messages (created_at) WHERE afc_status = 'pending';
