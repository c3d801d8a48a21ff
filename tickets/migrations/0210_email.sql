-- Email channel (issue 5): where the IMAP import stands per mailbox, and the Message-IDs that
-- thread mail to clients. Never edit an applied migration.

-- One row per imported mailbox (`<user>@<host>/<mailbox>`): a new UIDVALIDITY restarts the scan
-- at UID 0 (the message ids dedup what was imported before), otherwise only UIDs above
-- `last_uid` are fetched. `last_uid` moves only after Kafka acknowledged the mail.
CREATE TABLE email_mailboxes (
    name         text PRIMARY KEY,
    uid_validity bigint NOT NULL,
    last_uid     bigint NOT NULL DEFAULT 0,
    updated_at   timestamptz NOT NULL DEFAULT now()
);

-- Every Message-ID seen or sent, with the client it belongs to: an inbound reply whose
-- In-Reply-To/References names one of these belongs to that client, whatever address it came from.
CREATE TABLE email_messages (
    id          bigserial PRIMARY KEY,
    message_id  text NOT NULL,                 -- without the angle brackets
    client_id   text NOT NULL,
    direction   text NOT NULL CHECK (direction IN ('in', 'out')),
    -- Inbound: the external id of the stored message; outbound: the event it carried.
    external_id text,
    ticket_id   uuid,
    event_seq   bigint,
    subject     text NOT NULL DEFAULT '',
    -- Inbound: the mail's own References (for the next reply's References chain).
    refs        text[] NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT email_messages_once UNIQUE (direction, message_id, client_id)
);
CREATE INDEX email_messages_by_id ON email_messages (message_id);
CREATE INDEX email_messages_last_in ON email_messages (client_id, id) WHERE direction = 'in';
