-- Never edit an applied migration (sqlx checks hashes): add a new file instead.

-- Bot commands under the bank's own AFC system (`afc.provider: kafka`): a command is held for the
-- AFC verdict like any client message, but of no ticket (a command opens none): its afc_outbox row
-- names no ticket, and its bot_commands row waits in 'held' (not published, no bot timer). A
-- passed verdict moves it to 'queued' (the bot gets it, its timeout starts then); a blocked one to
-- 'blocked' (the message is then blocked and warned about on the client's ticket, as any message).
ALTER TABLE afc_outbox ALTER COLUMN ticket_id DROP NOT NULL;

ALTER TABLE bot_commands DROP CONSTRAINT bot_commands_status_check;
ALTER TABLE bot_commands ADD CONSTRAINT bot_commands_status_check
    CHECK (status IN ('held', 'queued', 'answered', 'timed_out', 'blocked'));
