-- A manager's idempotency keys are scoped to the ticket: the same key (a console's `r1`) on
-- another ticket is another note. Replies need no change of schema: their external id now names
-- the ticket (`<manager>/<ticket>/<key>`), and a reply stored under the earlier form
-- (`<manager>/<key>`) is still found for its own ticket.
ALTER TABLE notes DROP CONSTRAINT notes_manager_key;
ALTER TABLE notes ADD CONSTRAINT notes_manager_ticket_key UNIQUE (manager_id, ticket_id, idempotency_key);
