-- Files that messages carry. The bytes are in the object store (never in PostgreSQL or Kafka);
-- a row here is the reference: who may fetch it follows from the message that carries it, through
-- the same visibility rules as the message (tickets::visibility).
CREATE TABLE attachments (
    id uuid PRIMARY KEY,
    -- Exactly one owner: the client who sent it, or the manager who uploaded it for a ticket.
    client_id text,
    manager_id text,
    ticket_id uuid,
    -- Set once, when a message carries it (a client's message stored, a manager's reply sent).
    message_id uuid REFERENCES messages (id),
    position int NOT NULL DEFAULT 0,
    file_name text NOT NULL,
    content_type text NOT NULL,
    size_bytes bigint NOT NULL,
    sha256 text NOT NULL,
    -- The object's key in the store: attachments/<yyyy>/<mm>/<dd>/<id>.
    object_key text NOT NULL,
    -- A text file's content, read by the AFC check with the message; NULL once blocked.
    text_content text,
    -- Its message was blocked: never fetched again; the object is deleted (purged_at).
    blocked_at timestamptz,
    purged_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    CHECK ((client_id IS NULL) <> (manager_id IS NULL)),
    CHECK (manager_id IS NULL OR ticket_id IS NOT NULL)
);
CREATE INDEX attachments_of_message ON attachments (message_id, position) WHERE message_id IS NOT NULL;
-- Objects to delete: of blocked messages, and uploads no message took (abandoned).
CREATE INDEX attachments_to_purge ON attachments (created_at) WHERE purged_at IS NULL AND (blocked_at IS NOT NULL OR message_id IS NULL);
