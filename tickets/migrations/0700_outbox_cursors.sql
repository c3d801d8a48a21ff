-- Where each reader of the outbox that keeps its own position is: every event up to `after_seq`
-- was handled. `workflow-signals` is the outbox relay's signaller (lifecycle events → ticket
-- workflow signals), which no longer waits on, nor holds up, publishing. It starts after the last
-- published event: the relay before it signalled every event before marking it published, in
-- `seq` order. Never edit an applied migration.
CREATE TABLE outbox_cursors (
    name        text PRIMARY KEY,
    after_seq   bigint NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
INSERT INTO outbox_cursors (name, after_seq)
SELECT 'workflow-signals', COALESCE(max(seq), 0) FROM events WHERE published_at IS NOT NULL;
