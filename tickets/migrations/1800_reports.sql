-- Reports (issue 17, part 4) read the lifecycle events of a period and the tickets opened in it.
-- Partial: only the kinds a report counts, a small share of the outbox; and a ticket's
-- assignments, to tell the first (the end of its wait) from a transfer. Never edit an applied
-- migration.
CREATE INDEX events_for_reports ON events (created_at)
    WHERE kind IN ('ticket_assigned', 'ticket_responded', 'ticket_closed', 'ticket_escalated',
                   'sla_breached', 'satisfaction_recorded');
CREATE INDEX events_assignments ON events (ticket_id, id) WHERE kind = 'ticket_assigned';
CREATE INDEX tickets_by_created_at ON tickets (created_at);
