-- Never edit an applied migration (sqlx checks hashes): add a new file instead.

-- Client commands for the bank's bot worker (workflows.yaml `bots`): a client message that is a
-- known command and passed the AFC check is not routed to a manager but queued here, in the
-- inbound transaction. The row is its own outbox (published_at) and its own timer (due_at);
-- `status` moves once, from 'queued' to the first of an answer or a timeout.
CREATE TABLE bot_commands (
    -- The command message's id: also the correlation id the bot answers with.
    id                uuid PRIMARY KEY REFERENCES messages (id),
    client_id         text NOT NULL REFERENCES clients (id),
    channel           text NOT NULL,
    command           text NOT NULL,
    args              text NOT NULL,
    status            text NOT NULL DEFAULT 'queued'
                      CHECK (status IN ('queued', 'answered', 'timed_out')),
    timeout_ms        bigint NOT NULL CHECK (timeout_ms > 0),
    -- What the spec said at the time: a timeout tells the client `timeout_message` and, with
    -- 'hand_over', routes the command to a manager as an ordinary message.
    on_timeout        text NOT NULL CHECK (on_timeout IN ('reply', 'hand_over')),
    timeout_message   text NOT NULL,
    due_at            timestamptz NOT NULL,
    published_at      timestamptz,
    -- When it left 'queued', and whether a manager took the conversation over.
    settled_at        timestamptz,
    handed_over       boolean NOT NULL DEFAULT false,
    -- Answers that came after the timeout, kept for the bank's records (never shown).
    late_replies      int NOT NULL DEFAULT 0,
    created_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX bot_commands_unpublished ON bot_commands (created_at) WHERE published_at IS NULL;
CREATE INDEX bot_commands_due ON bot_commands (due_at) WHERE status = 'queued';
CREATE INDEX bot_commands_by_client ON bot_commands (client_id, created_at);
