-- A blocked message's text is kept only redacted (every digit masked but a card number's first
-- and last four); the original, when the bank's audit needs it, is sealed with INBOX_DATA_KEY
-- (AES-256-GCM, nonce || ciphertext) in `sealed_body`. Messages blocked before this migration
-- have no audit copy: their digits are masked here, as is their echo in `message_accepted`.
ALTER TABLE messages ADD COLUMN sealed_body bytea;

UPDATE messages SET body = regexp_replace(body, '[0-9]', '*', 'g')
WHERE author = 'client' AND afc_status = 'blocked' AND body ~ '[0-9]';

UPDATE events e SET payload = jsonb_set(e.payload, '{body}', to_jsonb(m.body))
FROM messages m
WHERE e.dedup_key = 'accepted:' || m.id::text AND m.author = 'client' AND m.afc_status = 'blocked'
  AND e.payload ? 'body';
