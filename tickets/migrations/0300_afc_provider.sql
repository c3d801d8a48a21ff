-- The external AFC provider (Kafka): which messages were handed to it and the verdicts it sent.

-- Set once the message was published to the AFC topic, so a retried activity does not publish it
-- again (a second publish would be harmless anyway: verdicts are idempotent).
ALTER TABLE messages ADD COLUMN afc_sent_at timestamptz;
CREATE INDEX messages_afc_unsent ON messages (client_id, created_at, id)
    WHERE afc_status = 'pending' AND afc_sent_at IS NULL;

-- One verdict per message, ever: a duplicate changes nothing and a contradicting one is refused
-- (dead-lettered by the consumer). The signed token is kept as the audit trail.
CREATE TABLE afc_verdicts (
    message_id  uuid PRIMARY KEY REFERENCES messages (id),
    client_id   text NOT NULL,
    status      text NOT NULL CHECK (status IN ('ok', 'suspicious')),
    token       text NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now()
);
