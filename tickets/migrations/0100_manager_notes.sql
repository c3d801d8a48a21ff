-- Internal notes of managers on a ticket (issue 6). Never edit an applied migration.
-- Notes live in a table of their own: no client read touches it, so a note cannot reach a client
-- through a query that forgot a filter.
CREATE TABLE notes (
    id              uuid PRIMARY KEY,
    ticket_id       uuid NOT NULL REFERENCES tickets (id),
    manager_id      text NOT NULL,
    -- Retries with the same key map onto the same note.
    idempotency_key text NOT NULL,
    body            text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT notes_manager_key UNIQUE (manager_id, idempotency_key)
);
CREATE INDEX notes_by_ticket ON notes (ticket_id, created_at, id);

-- Admin listings by status and age.
CREATE INDEX tickets_by_status_age ON tickets (status, created_at, id);
-- Audit trail of one ticket.
CREATE INDEX events_by_ticket ON events (ticket_id, seq) WHERE ticket_id IS NOT NULL;
