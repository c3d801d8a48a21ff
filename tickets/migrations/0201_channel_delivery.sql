-- Channels (issue 5): where each channel adapter stands, and one row per outbound delivery.
-- Never edit an applied migration.

-- A named position: a Telegram bot's next update offset, a delivery worker's last event seq, ...
CREATE TABLE channel_cursors (
    name       text PRIMARY KEY,
    position   bigint NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- One row per (event, channel) sent out: claimed before the send, so a restart never sends twice.
-- 'unknown' marks a send interrupted by a crash (it may or may not have reached the client).
CREATE TABLE deliveries (
    event_seq   bigint NOT NULL REFERENCES events (seq),
    channel     text NOT NULL,
    client_id   text NOT NULL,
    status      text NOT NULL CHECK (status IN ('sending', 'sent', 'failed', 'unknown')),
    attempts    int NOT NULL DEFAULT 0,
    detail      text,
    -- The channel's id of what was sent (Telegram message id, email Message-ID).
    external_id text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (event_seq, channel)
);
CREATE INDEX deliveries_failed ON deliveries (channel, created_at) WHERE status <> 'sent';
