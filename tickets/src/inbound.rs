//! Storing a poll's worth of inbound client messages in one transaction, and moving several Kafka
//! read positions at once: the inbound consumer's hot path.
//!
//! [`PgStore::intake_batch`] is that transaction with the AFC check inside it: the batch is
//! stored, checked, classified and attached to each client's ticket (opened here when the client
//! has none), with its events. The ticket workflow hears only what changes its lifecycle
//! (`ticket_opened`, `ticket_queued`, then assignments and replies) through the outbox: no
//! Temporal call per message. Banking rule 1 holds by construction: a message becomes visible to a
//! manager (its `message_visible` event, its ticket's history) only in the transaction that
//! records its passed verdict. When the spec's AFC check is the bank's external system, the
//! messages stay `pending` and are queued for it in the same transaction (`afc_outbox`); its
//! verdicts are applied by [`PgStore::take_afc_verdict`]. Messages whose ticket's workflow checks
//! them itself (tickets opened before this path existed, tickets of another spec version) stay
//! `pending` and their clients are returned to be woken, as before.
//!
//! One transaction per message cost a handful of round trips and a commit each; a batch has a
//! fixed number of statements whatever its size.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use sqlx::Row as _;
use uuid::Uuid;

use sqlx::{Postgres, Transaction};

use crate::attachments::{CHECKED_TEXT_OF_M, attach_client_files_in};
use crate::bots::{BotCall, hold_command_in, queue_command_in};
use crate::domain::{
    NewClientMessage, TicketClassification, TicketStatus, Verdict, event_kind, parse_rating,
    ticket_id_opened_by,
};
use crate::external_afc::{ExternalCheck, hold_for_afc};
use crate::lifecycle::record_rating_in;
use crate::managers::match_waiting;
use crate::messages::{apply_verdicts_in, withdraw_in};
use crate::meters::{self, Timings};
use crate::store::{PgStore, Result, insert_event, status_of};
use crate::ticket_event::TicketEvent;

/// Messages per batch at most. Rows of one batch get `created_at` = transaction start + their
/// position in microseconds (they all share `now()`, and a client's chat and pending queue are
/// ordered by `created_at, id`); the bound keeps that spread (< 1 ms) below the time any batch
/// takes to commit, so the next batch of the same partition still starts later.
pub const MAX_INBOUND_BATCH: usize = 256;

/// A client message written within this many seconds of the one before is checked together with
/// it (a card number split over two messages); older ones are a new conversation.
pub const SPLIT_WINDOW_SECS: i64 = 120;

impl PgStore {
    /// Stores client messages as `pending`, in order, with their `message_accepted` events, in one
    /// transaction. Messages already stored (a redelivery, or a duplicate within `msgs`) change
    /// nothing. Returns how many were new. At most [`MAX_INBOUND_BATCH`] messages.
    pub async fn record_inbound_batch(&self, msgs: &[NewClientMessage]) -> Result<usize> {
        self.record_inbound_batch_traced(msgs, &[]).await
    }

    /// [`PgStore::record_inbound_batch`], keeping each message's trace context:
    /// `trace_parents[i]` is the `traceparent` of `msgs[i]` (see `trace_context`). Shorter than
    /// `msgs` (empty when span export is off): the rest have none (`unnest` pads with NULLs).
    pub async fn record_inbound_batch_traced(
        &self,
        msgs: &[NewClientMessage],
        trace_parents: &[Option<String>],
    ) -> Result<usize> {
        if msgs.is_empty() {
            return Ok(0);
        }
        let mut tx = self.begin_writing(false).await?;
        let stored = insert_inbound(&mut tx, msgs, trace_parents).await?;
        if stored == 0 {
            // Nothing new: the whole batch was a redelivery.
            return Ok(0);
        }
        self.commit_writing(tx).await?;
        Ok(stored)
    }

    /// [`PgStore::save_kafka_offset`] for several partitions of `topic` in one statement: each
    /// `(partition, next_offset)` records that every record before it was handled (never moves
    /// back).
    pub async fn save_kafka_offsets(&self, topic: &str, next: &[(i32, i64)]) -> Result<()> {
        if next.is_empty() {
            return Ok(());
        }
        // One row per partition (the highest), as an upsert may not touch a row twice.
        let mut by_partition: BTreeMap<i32, i64> = BTreeMap::new();
        for &(p, o) in next {
            let e = by_partition.entry(p).or_insert(o);
            *e = (*e).max(o);
        }
        let (partitions, offsets): (Vec<i32>, Vec<i64>) = by_partition.into_iter().unzip();
        sqlx::query(
            "INSERT INTO kafka_offsets (topic, partition, next_offset)
             SELECT $1, p, o FROM unnest($2::int4[], $3::int8[]) AS x(p, o)
             ON CONFLICT (topic, partition) DO UPDATE
             SET next_offset = GREATEST(kafka_offsets.next_offset, EXCLUDED.next_offset), updated_at = now()",
        )
        .bind(topic)
        .bind(&partitions)
        .bind(&offsets)
        .execute(self.pool())
        .await?;
        Ok(())
    }
}

/// What the inbound transaction needs of the current spec to check messages itself. The rules
/// are the workflow crate's; the store only calls them.
pub trait MessageCheck: Sync {
    /// The spec version this check is: only tickets of this version are checked here.
    fn version(&self) -> &str;
    fn verdict(&self, body: &str) -> Verdict;
    /// The verdict on `body` written right after `previous` (the client's message before it,
    /// within [`SPLIT_WINDOW_SECS`]): a number split over the two blocks this one.
    fn verdict_after(&self, previous: Option<&str>, body: &str) -> Verdict {
        let _ = previous;
        self.verdict(body)
    }
    /// The ticket's category, priority, queue and fields from its first passed message.
    fn classify(&self, body: &str) -> TicketClassification;
    /// Told to the client in place of a blocked message.
    fn blocked_warning(&self) -> &str;
    /// The bank's AFC system checks this spec's messages: the transaction holds them (`pending`)
    /// and queues them for it (`afc_outbox`); the verdict consumer applies its verdicts
    /// ([`PgStore::take_afc_verdict`]). None: [`MessageCheck::verdict`] decides here.
    fn external(&self) -> Option<ExternalCheck> {
        None
    }
    /// `body` as one of the spec's bot commands (`workflows.yaml` `bots`), if it is one: it is
    /// then queued for the bot once it passed, not routed to a manager.
    fn command(&self, body: &str) -> Option<BotCall> {
        let _ = body;
        None
    }
}

/// What one inbound transaction did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Intake {
    /// Messages stored by this call (0 for a redelivery).
    pub stored: usize,
    /// Clients whose pending messages are their ticket workflow's to check: wake each once.
    pub wake: Vec<String>,
    /// Tickets opened by this call.
    pub opened: Vec<Uuid>,
    pub passed: usize,
    pub blocked: usize,
    /// Messages queued for the external AFC system (held until its verdict).
    pub held: usize,
    /// Closed tickets rated by a client's answer to the satisfaction question.
    pub rated: usize,
    /// Messages that had passed and were taken back: each the first half of a number its
    /// client's next message (in this call) completed.
    pub withdrawn: usize,
    /// Commands that passed and were queued for the bot (routed to no manager).
    pub commands: usize,
}

/// What [`split_verdicts`] decided: a verdict per message, and the earlier messages to take
/// back (id, the rule that blocks them now).
pub type SplitVerdicts = (Vec<(Uuid, Verdict)>, Vec<(Uuid, String)>);

/// The verdicts on one client's pending `messages` (oldest first), each judged after the one
/// before it: `previous` is the client's last checked message before them, if it passed within
/// [`SPLIT_WINDOW_SECS`]. A message that completes a number begun in the message before it
/// (a card number split over two) is blocked, and so is that first half: one pending here is
/// blocked with it; an earlier one, already shown, is returned to be withdrawn (id, rule).
/// A blocked message is no half of anything: its successor is judged alone.
pub fn split_verdicts(
    check: &dyn MessageCheck,
    previous: Option<(Uuid, &str)>,
    messages: &[(Uuid, String)],
) -> SplitVerdicts {
    let mut verdicts: Vec<(Uuid, Verdict)> = Vec::with_capacity(messages.len());
    let mut withdrawn = Vec::new();
    // The previous passed message: its index in `verdicts` if it is one of `messages`.
    let mut before: Option<(Option<usize>, Uuid, &str)> = previous.map(|(id, b)| (None, id, b));
    for (i, (id, body)) in messages.iter().enumerate() {
        let v = check.verdict_after(before.map(|(_, _, b)| b), body);
        if let (Verdict::Blocked { rule }, Some((at, first, _))) = (&v, before)
            && check.verdict(body) == Verdict::Passed
        {
            match at {
                Some(k) => verdicts[k].1 = v.clone(),
                None => withdrawn.push((first, rule.clone())),
            }
        }
        before = (v == Verdict::Passed).then_some((Some(i), *id, body.as_str()));
        verdicts.push((*id, v));
    }
    (verdicts, withdrawn)
}

/// A client's open ticket, locked by the transaction.
pub(crate) struct OpenTicket {
    pub(crate) id: Uuid,
    pub(crate) status: TicketStatus,
    pub(crate) manager_id: Option<String>,
    /// Its messages are checked here (else by its workflow).
    pub(crate) checked_here: bool,
}

impl PgStore {
    /// Stores `msgs` (as [`PgStore::record_inbound_batch_traced`] does) and, when `check` is
    /// given, checks every pending message of their clients in the same transaction: a client
    /// with no open ticket gets one (id [`ticket_id_opened_by`] its oldest pending message) and a
    /// `ticket_opened` event; verdicts are recorded, the first passed message classifies and
    /// queues the ticket (`ticket_queued`) and ready managers are matched. Clients whose ticket
    /// checks its own messages are in [`Intake::wake`]; with `check` None, every client is.
    pub async fn intake_batch(
        &self,
        msgs: &[NewClientMessage],
        trace_parents: &[Option<String>],
        check: Option<&dyn MessageCheck>,
    ) -> Result<Intake> {
        let mut out = Intake::default();
        if msgs.is_empty() {
            return Ok(out);
        }
        let clients: BTreeSet<&str> = msgs.iter().map(|m| m.client_id.as_str()).collect();
        let Some(check) = check else {
            out.stored = self
                .record_inbound_batch_traced(msgs, trace_parents)
                .await?;
            out.wake = clients.into_iter().map(str::to_owned).collect();
            return Ok(out);
        };
        // The matching lock first (a passed message may match a manager), as every matcher does.
        let mut tx = self.begin_writing(true).await?;
        out.stored = insert_inbound(&mut tx, msgs, trace_parents).await?;
        let client_ids: Vec<&str> = clients.iter().copied().collect();

        // Each client's open ticket, locked in client order.
        let rows = sqlx::query(
            "SELECT id, client_id, status, manager_id, spec_version, checked_in_store FROM tickets
             WHERE client_id = ANY($1) AND status <> 'closed'
             ORDER BY client_id FOR UPDATE",
        )
        .bind(&client_ids)
        .fetch_all(&mut *tx)
        .await?;
        let mut open: BTreeMap<String, OpenTicket> = BTreeMap::new();
        for r in &rows {
            let version: String = r.try_get("spec_version")?;
            let ticket = OpenTicket {
                id: r.try_get("id")?,
                status: status_of(r)?,
                manager_id: r.try_get("manager_id")?,
                checked_here: r.try_get::<bool, _>("checked_in_store")?
                    && version == check.version(),
            };
            open.insert(r.try_get("client_id")?, ticket);
        }
        let (here, theirs): (Vec<&str>, Vec<&str>) = client_ids
            .iter()
            .partition(|c| open.get(**c).is_none_or(|t| t.checked_here));
        out.wake = theirs.into_iter().map(str::to_owned).collect();

        // Every pending message of the clients checked here, oldest first per client (a
        // redelivery finds none: its messages were checked when they were stored).
        // What is checked is the text with its files' names and text contents.
        let pending_sql = format!(
            "SELECT m.id, m.client_id, {CHECKED_TEXT_OF_M} AS body FROM messages m
             WHERE m.client_id = ANY($1) AND m.author = 'client' AND m.afc_status = 'pending'
             ORDER BY m.client_id, m.created_at, m.id"
        );
        let pending = sqlx::query(&pending_sql)
            .bind(&here)
            .fetch_all(&mut *tx)
            .await?;
        let mut by_client: BTreeMap<String, Vec<(Uuid, String)>> = BTreeMap::new();
        for r in &pending {
            by_client
                .entry(r.try_get("client_id")?)
                .or_default()
                .push((r.try_get("id")?, r.try_get("body")?));
        }
        // Each client's last checked message, if recent and passed: the first half of a split
        // number.
        let checking: Vec<&str> = by_client.keys().map(String::as_str).collect();
        let last_checked: BTreeMap<String, (Uuid, String)> =
            sqlx::query_as::<_, (String, Uuid, String, String)>(
                "SELECT DISTINCT ON (client_id) client_id, id, afc_status, body FROM messages
                 WHERE client_id = ANY($1) AND author = 'client'
                   AND afc_status IN ('passed', 'blocked')
                   AND created_at > now() - make_interval(secs => $2)
                 ORDER BY client_id, created_at DESC, id DESC",
            )
            .bind(&checking)
            .bind(SPLIT_WINDOW_SECS as f64)
            .fetch_all(&mut *tx)
            .await?
            .into_iter()
            .filter(|(_, _, status, _)| status == "passed")
            .map(|(client, id, _, body)| (client, (id, body)))
            .collect();

        let mut timings = Timings::default();
        let mut queued_any = false;
        for (client_id, all) in &by_client {
            // A command that passed is the bot's (a blocked one is blocked as any message is).
            // With the bank's own AFC system a command is held for its verdict, of no ticket.
            let mut kept = Vec::with_capacity(all.len());
            for (id, body) in all {
                let Some(call) = check.command(body) else {
                    kept.push((*id, body.clone()));
                    continue;
                };
                if let Some(external) = check.external() {
                    if hold_command_in(&mut tx, *id, &call, external.timeout_ms).await? {
                        out.held += 1;
                    }
                } else if check.verdict(body) == Verdict::Passed {
                    if queue_command_in(&mut tx, *id, &call).await? {
                        out.commands += 1;
                    }
                } else {
                    kept.push((*id, body.clone()));
                }
            }
            if kept.is_empty() {
                continue;
            }
            let mut messages: &[(Uuid, String)] = &kept;
            let ticket = match open.remove(client_id) {
                Some(t) => t,
                None => {
                    // No open ticket: a first message that answers the rating question of the
                    // client's last ticket rates it (and opens nothing). With the bank's own AFC
                    // system every message goes to it, a rating too: it is then a message.
                    if check.external().is_none()
                        && let Some(((id, body), rest)) = messages.split_first()
                        && let Some(rating) = parse_rating(body)
                        && check.verdict(body) == Verdict::Passed
                        && record_rating_in(&mut tx, client_id, *id, rating).await?
                    {
                        out.rated += 1;
                        messages = rest;
                        if messages.is_empty() {
                            continue;
                        }
                    }
                    match open_ticket_in(&mut tx, client_id, messages, check).await? {
                        Some(t) => {
                            out.opened.push(t.id);
                            t
                        }
                        // Opened meanwhile by a workflow that checks its own messages.
                        None => {
                            out.wake.push(client_id.clone());
                            continue;
                        }
                    }
                }
            };
            if let Some(external) = check.external() {
                // Held for the AFC system's verdict: nobody sees them until it commits.
                let ids: Vec<Uuid> = messages.iter().map(|(id, _)| *id).collect();
                out.held +=
                    hold_for_afc(&mut tx, Some(ticket.id), &ids, external.timeout_ms).await?;
                continue;
            }
            let (verdicts, withdrawn) = split_verdicts(
                check,
                last_checked.get(client_id).map(|(id, b)| (*id, b.as_str())),
                messages,
            );
            for (id, rule) in &withdrawn {
                if withdraw_in(&mut tx, self.audit_seal(), *id, rule).await? {
                    out.withdrawn += 1;
                }
            }
            let classification = (ticket.status == TicketStatus::Open)
                .then(|| {
                    messages
                        .iter()
                        .zip(&verdicts)
                        .find(|(_, (_, v))| *v == Verdict::Passed)
                        .map(|((_, body), _)| check.classify(body))
                })
                .flatten();
            let applied = apply_verdicts_in(
                &mut tx,
                ticket.id,
                ticket.status,
                ticket.manager_id.as_deref(),
                &verdicts,
                check.blocked_warning(),
                classification.as_ref(),
                self.audit_seal(),
                &mut timings,
            )
            .await?;
            out.passed += applied.passed;
            out.blocked += applied.blocked;
            if applied.queued {
                queued_any = true;
                insert_event(
                    &mut tx,
                    client_id,
                    &TicketEvent::TicketQueued {
                        ticket_id: ticket.id,
                    },
                )
                .await?;
            }
        }
        if queued_any {
            match_waiting(&mut tx, &mut timings).await?;
        }
        out.wake.sort();
        self.commit_writing(tx).await?;
        meters::verdicts_applied(out.passed, out.blocked);
        timings.report();
        Ok(out)
    }
}

/// Opens a ticket for `client_id`, named after its oldest pending message, with its
/// `ticket_opened` event. None when another open ticket of the client appeared meanwhile (the
/// one-open-ticket index refused this one).
pub(crate) async fn open_ticket_in(
    tx: &mut Transaction<'_, Postgres>,
    client_id: &str,
    messages: &[(Uuid, String)],
    check: &dyn MessageCheck,
) -> Result<Option<OpenTicket>> {
    let Some((first, _)) = messages.first() else {
        return Ok(None);
    };
    let mut id = ticket_id_opened_by(*first);
    // A message held across its ticket's close (waiting for an external verdict) names the next
    // ticket after that one, as a closing workflow does (`workflow::ticket::next_ticket_id`).
    while sqlx::query_scalar::<_, bool>("SELECT EXISTS (SELECT 1 FROM tickets WHERE id = $1)")
        .bind(id)
        .fetch_one(&mut **tx)
        .await?
    {
        id = Uuid::new_v5(&id, b"next");
    }
    let inserted: Option<Uuid> = sqlx::query_scalar(
        "INSERT INTO tickets (id, client_id, status, spec_version, checked_in_store, afc_checks_replies)
         VALUES ($1, $2, 'open', $3, true, $4)
         ON CONFLICT DO NOTHING RETURNING id",
    )
    .bind(id)
    .bind(client_id)
    .bind(check.version())
    .bind(check.external().is_some_and(|e| e.replies))
    .fetch_optional(&mut **tx)
    .await?;
    if inserted.is_none() {
        return Ok(None);
    }
    insert_event(tx, client_id, &TicketEvent::TicketOpened { ticket_id: id }).await?;
    Ok(Some(OpenTicket {
        id,
        status: TicketStatus::Open,
        manager_id: None,
        checked_here: true,
    }))
}

/// Stores client messages as `pending`, in order, with their `message_accepted` events, inside a
/// writing transaction (see [`PgStore::record_inbound_batch_traced`]). Returns how many were new.
pub(crate) async fn insert_inbound(
    tx: &mut Transaction<'_, Postgres>,
    msgs: &[NewClientMessage],
    trace_parents: &[Option<String>],
) -> Result<usize> {
    if msgs.is_empty() {
        return Ok(0);
    }
    debug_assert!(msgs.len() <= MAX_INBOUND_BATCH);
    // One row per client: an upsert may not touch the same row twice in one statement.
    // The last non-empty name wins, as it would message by message.
    let mut names: BTreeMap<&str, &str> = BTreeMap::new();
    for m in msgs {
        let name = names.entry(&m.client_id).or_insert("");
        if !m.client_name.is_empty() {
            *name = &m.client_name;
        }
    }
    let (client_ids, client_names): (Vec<&str>, Vec<&str>) = names.into_iter().unzip();

    sqlx::query(
        "INSERT INTO clients (id, display_name)
         SELECT * FROM unnest($1::text[], $2::text[])
         ON CONFLICT (id) DO UPDATE SET display_name = EXCLUDED.display_name
         WHERE EXCLUDED.display_name <> '' AND clients.display_name <> EXCLUDED.display_name",
    )
    .bind(&client_ids)
    .bind(&client_names)
    .execute(&mut **tx)
    .await?;

    let ids: Vec<Uuid> = msgs.iter().map(|m| m.id).collect();
    let owners: Vec<&str> = msgs.iter().map(|m| m.client_id.as_str()).collect();
    let channels: Vec<&str> = msgs.iter().map(|m| m.channel.as_str()).collect();
    let external: Vec<&str> = msgs.iter().map(|m| m.external_id.as_str()).collect();
    let bodies: Vec<&str> = msgs.iter().map(|m| m.body.as_str()).collect();
    let inserted: Vec<(Uuid, DateTime<Utc>)> = sqlx::query_as(
        "INSERT INTO messages (id, client_id, author, channel, external_id, body, afc_status, created_at, trace_parent)
         SELECT id, client_id, 'client', channel, external_id, body, 'pending',
                now() + (ord - 1) * interval '1 microsecond', trace_parent
         FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[])
              WITH ORDINALITY AS m(id, client_id, channel, external_id, body, trace_parent, ord)
         ORDER BY ord
         ON CONFLICT DO NOTHING
         RETURNING id, created_at",
    )
    .bind(&ids)
    .bind(&owners)
    .bind(&channels)
    .bind(&external)
    .bind(&bodies)
    .bind(&trace_parents[..trace_parents.len().min(msgs.len())])
    .fetch_all(&mut **tx)
    .await?;
    if inserted.is_empty() {
        return Ok(0);
    }

    // Events in message order, so each client's stream shows them as they were written.
    let created: BTreeMap<Uuid, DateTime<Utc>> = inserted.iter().copied().collect();
    let with_files: Vec<(Uuid, &str, &[crate::domain::AttachmentRef])> = msgs
        .iter()
        .filter(|m| !m.attachments.is_empty() && created.contains_key(&m.id))
        .map(|m| (m.id, m.client_id.as_str(), m.attachments.as_slice()))
        .collect();
    attach_client_files_in(tx, &with_files).await?;
    let mut seen = BTreeSet::new();
    let mut keys = Vec::with_capacity(inserted.len());
    let mut event_clients = Vec::with_capacity(inserted.len());
    let mut payloads = Vec::with_capacity(inserted.len());
    for m in msgs {
        // A duplicate within the batch was inserted once: its event is written once.
        let Some(created_at) = created.get(&m.id) else {
            continue;
        };
        if !seen.insert(m.id) {
            continue;
        }
        // The client's echo of their message, shown and published before its verdict: a card
        // number in it is masked (the stored message is redacted if it is blocked).
        let masked = crate::screening::mask_cards(&m.body);
        // File names alike (a card number as a file name).
        let files: Vec<crate::domain::AttachmentRef> = m
            .attachments
            .iter()
            .map(|a| crate::domain::AttachmentRef {
                name: crate::screening::mask_cards(&a.name).unwrap_or_else(|| a.name.clone()),
                ..a.clone()
            })
            .collect();
        let event = TicketEvent::MessageAccepted {
            message_id: m.id,
            body: masked.as_deref().unwrap_or(&m.body),
            channel: &m.channel,
            created_at: *created_at,
            attachments: &files,
        };
        keys.push(event.dedup_key());
        event_clients.push(m.client_id.as_str());
        payloads.push(event.payload());
    }
    sqlx::query(
        "INSERT INTO events (dedup_key, kind, ticket_id, client_id, client_visible, manager_id, payload)
         SELECT key, $3, NULL, client_id, true, NULL, payload
         FROM unnest($1::text[], $2::text[], $4::jsonb[]) WITH ORDINALITY AS e(key, client_id, payload, ord)
         ORDER BY ord
         ON CONFLICT (dedup_key) DO NOTHING",
    )
    .bind(&keys)
    .bind(&event_clients)
    .bind(event_kind::MESSAGE_ACCEPTED)
    .bind(&payloads)
    .execute(&mut **tx)
    .await?;
    Ok(inserted.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::screening::{AfcRule, Check, Rules};

    struct Cards(Rules);

    impl MessageCheck for Cards {
        fn version(&self) -> &str {
            "test"
        }
        fn verdict(&self, body: &str) -> Verdict {
            self.0.check(body)
        }
        fn verdict_after(&self, previous: Option<&str>, body: &str) -> Verdict {
            self.0.check_after(previous, body)
        }
        fn classify(&self, _: &str) -> TicketClassification {
            TicketClassification::default()
        }
        fn blocked_warning(&self) -> &str {
            "blocked"
        }
    }

    fn cards() -> Result<Cards, regex::Error> {
        Ok(Cards(Rules::compile(&[AfcRule {
            name: "card".into(),
            check: Check::CardNumber,
        }])?))
    }

    fn batch(bodies: &[&str]) -> Vec<(Uuid, String)> {
        bodies
            .iter()
            .enumerate()
            .map(|(i, b)| (Uuid::from_u128(i as u128 + 1), (*b).to_owned()))
            .collect()
    }

    fn only_verdicts(v: Vec<(Uuid, Verdict)>) -> Vec<Verdict> {
        v.into_iter().map(|(_, v)| v).collect()
    }

    fn blocked() -> Verdict {
        Verdict::Blocked {
            rule: "card".into(),
        }
    }

    #[test]
    fn a_split_card_blocks_both_halves_and_takes_back_one_already_shown() -> Result<(), regex::Error>
    {
        let check = cards()?;
        let earlier = Uuid::from_u128(99);
        // The first half was shown before this batch: it is to be withdrawn.
        let (v, withdrawn) = split_verdicts(
            &check,
            Some((earlier, "starts with 4000 0566")),
            &batch(&["5566 5556", "thanks"]),
        );
        let verdicts = only_verdicts(v);
        assert_eq!(verdicts, [blocked(), Verdict::Passed]);
        assert_eq!(withdrawn, [(earlier, "card".to_owned())]);

        // Both halves in the batch: both blocked, nothing to withdraw.
        let (v, withdrawn) =
            split_verdicts(&check, None, &batch(&["hi", "4000 0566", "5566 5556"]));
        let verdicts = only_verdicts(v);
        assert_eq!(verdicts, [Verdict::Passed, blocked(), blocked()]);
        assert!(withdrawn.is_empty());

        // A whole card in one message takes nothing back; nor does a number completing nothing.
        let (v, withdrawn) = split_verdicts(
            &check,
            Some((earlier, "order 4000 0566")),
            &batch(&["4111 1111 1111 1111", "5566 5556"]),
        );
        let verdicts = only_verdicts(v);
        assert_eq!(verdicts, [blocked(), Verdict::Passed]);
        assert!(withdrawn.is_empty());
        Ok(())
    }
}
