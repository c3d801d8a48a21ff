-- A delivery whose outcome is unknown (a restart interrupted its send) or that failed can be
-- sent again on the manager's word: status 'resend' until the channel's worker takes it;
-- `resends` counts the rounds (each round's unknown or failed event is its own).
ALTER TABLE deliveries DROP CONSTRAINT deliveries_status_check;
ALTER TABLE deliveries ADD CONSTRAINT deliveries_status_check
    CHECK (status IN ('sending', 'sent', 'failed', 'unknown', 'resend'));
ALTER TABLE deliveries ADD COLUMN resends int NOT NULL DEFAULT 0;
CREATE INDEX deliveries_resend ON deliveries (channel, event_seq) WHERE status = 'resend';

-- A transient failure (rate limit, network) no longer holds the channel's worker in a sleep: the
-- delivery waits as 'retry' until `next_attempt_at`, and the client's later deliveries wait
-- behind it (one client's messages stay in order; other clients go on).
ALTER TABLE deliveries DROP CONSTRAINT deliveries_status_check;
ALTER TABLE deliveries ADD CONSTRAINT deliveries_status_check
    CHECK (status IN ('sending', 'sent', 'failed', 'unknown', 'resend', 'retry'));
ALTER TABLE deliveries ADD COLUMN next_attempt_at timestamptz;
CREATE INDEX deliveries_due ON deliveries (channel, next_attempt_at) WHERE status = 'retry';
CREATE INDEX deliveries_waiting_by_client ON deliveries (channel, client_id)
    WHERE status IN ('retry', 'resend');
