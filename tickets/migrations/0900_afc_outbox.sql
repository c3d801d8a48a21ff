-- The external AFC provider's outbox. The inbound transaction holds a client message of a ticket
-- the store checks and, in the same transaction, queues it here for the bank's AFC system; a
-- manager reply of a ticket whose spec checks replies is queued by the reply's transaction. The
-- workflow service's AFC relay publishes unsent rows to `afc.msgs` and marks them sent (`due_at`:
-- when the verdict is overdue); its sweep raises one `afc_timeout` alert per overdue client
-- message (`alerted_at`). A row leaves once the message's verdict is recorded, so the table holds
-- only work in flight. Messages of tickets whose workflow hands them over (the earlier path) never
-- come here. Never edit an applied migration.
CREATE TABLE afc_outbox (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    message_id  uuid NOT NULL UNIQUE REFERENCES messages (id),
    -- The ticket the message was held for (named in the alert).
    ticket_id   uuid NOT NULL REFERENCES tickets (id),
    -- How long the AFC system has for its verdict; NULL for replies (already delivered: no alert).
    timeout_ms  bigint,
    sent_at     timestamptz,
    due_at      timestamptz,
    alerted_at  timestamptz
);
CREATE INDEX afc_outbox_unsent ON afc_outbox (id) WHERE sent_at IS NULL;
CREATE INDEX afc_outbox_due ON afc_outbox (due_at) WHERE alerted_at IS NULL AND due_at IS NOT NULL;

-- The ticket's manager replies go to the AFC system too (`check_manager_replies` of the spec it
-- was opened with).
ALTER TABLE tickets ADD COLUMN afc_checks_replies boolean NOT NULL DEFAULT false;
