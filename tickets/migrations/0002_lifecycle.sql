-- The lifecycle of workflows.yaml: classification, queues, priorities, timers, per-manager routing.
ALTER TABLE tickets
    ADD COLUMN category          text NOT NULL DEFAULT 'general',
    ADD COLUMN priority          int  NOT NULL DEFAULT 1 CHECK (priority BETWEEN 0 AND 3),
    ADD COLUMN queue             text NOT NULL DEFAULT 'general',
    ADD COLUMN fields            jsonb NOT NULL DEFAULT '{}',
    ADD COLUMN spec_version      text NOT NULL DEFAULT '',
    ADD COLUMN escalations       int  NOT NULL DEFAULT 0,
    ADD COLUMN first_response_at timestamptz,
    ADD COLUMN sla_breached_at   timestamptz;

DROP INDEX tickets_waiting;
CREATE INDEX tickets_waiting ON tickets (priority DESC, waiting_since, id) WHERE status = 'waiting';

-- Queues a manager serves; empty means every queue.
ALTER TABLE managers ADD COLUMN queues text[] NOT NULL DEFAULT '{}';
