-- Whether the inbound transaction checks this ticket's client messages itself (tickets it opens)
-- or the ticket's workflow does (tickets opened before that path existed, and tickets of specs
-- whose AFC check is an external system): the inbound consumer leaves the latter's messages
-- pending and wakes their workflow, as before. Existing rows are the workflow's (false).
-- A constant default: adding it rewrites nothing. Never edit an applied migration.
ALTER TABLE tickets ADD COLUMN checked_in_store boolean NOT NULL DEFAULT false;

-- The inbound transaction reads every pending message of a batch's clients: this index holds only
-- the messages in flight, so that read does not walk a long-standing client's whole history.
CREATE INDEX messages_pending_by_client ON messages (client_id, created_at, id)
    WHERE afc_status = 'pending';
