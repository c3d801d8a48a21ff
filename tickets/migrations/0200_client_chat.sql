-- Web chat: how far each client has read their chat (issue 5). Never edit an applied migration.
CREATE TABLE client_read_cursors (
    client_id          text PRIMARY KEY REFERENCES clients (id),
    -- The position of the last read message in the chat order (created_at, id).
    message_created_at timestamptz NOT NULL,
    message_id         uuid NOT NULL,
    updated_at         timestamptz NOT NULL DEFAULT now()
);
