-- Full-text search over what a manager may read: client messages that passed the AFC check and
-- managers' replies, in Russian and English. A pending or blocked message is never indexed (its
-- vector is NULL), and a message taken back (withdrawn) drops out as its status changes.
ALTER TABLE messages ADD COLUMN search tsvector GENERATED ALWAYS AS (
    CASE WHEN (author = 'client' AND afc_status = 'passed') OR author = 'manager'
         THEN to_tsvector('russian', body) || to_tsvector('english', body)
    END
) STORED;
CREATE INDEX messages_search ON messages USING gin (search);
