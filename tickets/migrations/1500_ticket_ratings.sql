-- The client's satisfaction rating of a closed ticket (1-5), given by answering the rating
-- question after the close on any channel.
ALTER TABLE tickets
    ADD COLUMN rating smallint CHECK (rating BETWEEN 1 AND 5),
    ADD COLUMN rated_at timestamptz;
CREATE INDEX tickets_rated_at ON tickets (rated_at) WHERE rated_at IS NOT NULL;
