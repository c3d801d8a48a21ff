-- Kafka read positions owned by PostgreSQL: a partition is read by whoever holds its advisory lock
-- (see tickets/src/offsets.rs), and its next offset moves only after a record was fully handled.
CREATE TABLE kafka_offsets (
    topic       text   NOT NULL,
    partition   int    NOT NULL,
    next_offset bigint NOT NULL CHECK (next_offset >= 0),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (topic, partition)
);
