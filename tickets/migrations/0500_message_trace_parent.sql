-- The W3C `traceparent` of the span that stored a client message (the inbound consumer's), only
-- while span export is on: the ticket workflow's activities that check the message, the outbox
-- relay that publishes its events and the WebSocket push continue the message's trace from it.
-- Nullable with no default: adding it rewrites nothing. Never edit an applied migration.
ALTER TABLE messages ADD COLUMN trace_parent text;
