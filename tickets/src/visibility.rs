//! Rules 1 and 2 in one place: what a manager and a client may see. Every read of the store builds its
//! WHERE clause from these fragments, so a new query cannot forget them.
//!
//! - A manager sees a ticket only while it is assigned to them (`tickets.manager_id = me`), and of its
//!   messages only client messages that passed the AFC check and managers' replies: never a pending or
//!   blocked client message, never a service message meant for the client.
//! - A client sees their own events only, across all of their tickets: one continuous chat.

/// Tickets visible to the manager bound as `$1`.
pub(crate) const MANAGER_TICKETS: &str = "t.manager_id = $1";

/// Messages (alias `m`) a manager may read once the ticket is theirs.
pub(crate) const MANAGER_MESSAGES: &str =
    "((m.author = 'client' AND m.afc_status = 'passed') OR m.author = 'manager')";

/// Events (alias `e`) of the client bound as `$1`.
pub(crate) const CLIENT_EVENTS: &str = "e.client_id = $1 AND e.client_visible";

/// The payload of a client's event (alias `e`) as the client may read it. `message_accepted`
/// echoes the client's text before the AFC check; once that message is blocked, a re-read of the
/// feed (a resume from an old cursor, a new device) gets the echo without its body and with
/// `"blocked": true`, so blocked content never shows beyond the warning.
pub(crate) const CLIENT_EVENT_PAYLOAD: &str = "CASE WHEN e.kind = 'message_accepted' AND EXISTS (
        SELECT 1 FROM messages b
        WHERE b.id = (e.payload->>'message_id')::uuid AND b.afc_status = 'blocked')
    THEN e.payload || jsonb_build_object('body', '', 'blocked', true)
    ELSE e.payload END";

/// Messages (alias `m`) of a client's own chat history: everything said to them and their own
/// messages, but a blocked message only through the warning that replaced it. Authors are listed
/// explicitly, so a new kind (an internal note) stays hidden until a rule admits it.
pub(crate) const CLIENT_MESSAGES: &str = "m.client_id = $1 AND (m.author IN ('manager', 'system') \
     OR (m.author = 'client' AND m.afc_status <> 'blocked'))";

/// Files (alias `a`, its message `m` and ticket `t` left-joined) the client bound as `$1` may
/// fetch: those of the messages of their chat ([`CLIENT_MESSAGES`]: never a blocked message's),
/// and their own uploads no message carries yet.
pub(crate) const CLIENT_ATTACHMENTS: &str = "(m.client_id = $1 AND (m.author IN ('manager', 'system') \
     OR (m.author = 'client' AND m.afc_status <> 'blocked'))) \
     OR (a.message_id IS NULL AND a.client_id = $1)";

/// Files (aliases as [`CLIENT_ATTACHMENTS`]) the manager bound as `$1` may fetch: those of the
/// messages they may read on tickets assigned to them ([`MANAGER_TICKETS`],
/// [`MANAGER_MESSAGES`]: a client's file only once its message passed), and their own uploads no
/// reply carries yet.
pub(crate) const MANAGER_ATTACHMENTS: &str = "(t.manager_id = $1 \
     AND ((m.author = 'client' AND m.afc_status = 'passed') OR m.author = 'manager')) \
     OR (a.message_id IS NULL AND a.manager_id = $1)";

/// Files (aliases as [`CLIENT_ATTACHMENTS`]) the supervisor view may fetch: those of any message
/// a manager may read ([`MANAGER_MESSAGES`]). `$1` is bound and unused.
pub(crate) const SUPERVISOR_ATTACHMENTS: &str = "$1::text IS NOT NULL \
     AND ((m.author = 'client' AND m.afc_status = 'passed') OR m.author = 'manager')";

/// Notes (alias `n`) a manager may read: those of tickets currently assigned to them (alias `t`).
/// No client rule mentions the `notes` table: clients never see a note.
pub(crate) const MANAGER_NOTES: &str = "n.ticket_id = t.id";

/// Events (alias `e`) addressed to the manager bound as `$1`: each event names the one manager who
/// held the ticket when it was written, so a manager who handed a ticket over sees nothing newer.
pub(crate) const MANAGER_EVENTS: &str = "e.manager_id = $1";
