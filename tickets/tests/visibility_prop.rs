//! Property test of the visibility rules (issue 6) against a real PostgreSQL.
//!
//! Random sequences over several clients and managers (client messages, AFC verdicts that pass or
//! block, readiness changes and the assignments they cause, replies, internal notes, transfers,
//! escalations, SLA breaches, closes and reopenings, read cursors) run against the store. After
//! every step each read a manager or a client can reach (the lists and pages the gateway serves, the
//! event reads behind `StreamEvents` and the WebSocket) is checked against a model this test keeps
//! in plain Rust, never derived from the store's SQL:
//!
//! - a manager sees exactly the tickets they hold (the last manager of a closed ticket keeps read
//!   access to it; a transfer takes it away), of them exactly the client messages that passed AFC,
//!   the replies and the ticket's notes, and only events about tickets they held at the time;
//! - a client sees exactly their own chat (their messages unless blocked, replies, warnings, service
//!   messages), never a note, never another client's content, never a blocked body (also not when
//!   re-reading their event feed from the start).
//!
//! Every body is a unique token such as `[cmsg-7]`, so a leak shows as a token where it must not be.
//!
//! `make test` runs one scripted sequence through every transition, then `INBOX_VISIBILITY_CASES`
//! random sequences (default 4) of up to `INBOX_VISIBILITY_STEPS` steps (default 30), in one fresh
//! database emptied before each sequence: a few seconds. A longer hunt (minutes):
//! `INBOX_VISIBILITY_CASES=300 INBOX_VISIBILITY_STEPS=80 cargo nextest run -p tickets --test
//! visibility_prop --no-capture` (it prints how often each transition ran; `PROPTEST_RNG_SEED=<n>`
//! replays a seed). A failure prints the shrunk sequence of steps.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Context, anyhow, bail, ensure};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use sqlx::Connection;
use tickets::chat::ChatCursor;
use tickets::desk::ticket_cursor;
use tickets::{
    Author, Caller, NewClientMessage, PgStore, Role, StoreError, TicketStatus, Verdict,
    message_id_for,
};
use uuid::Uuid;

const CLIENTS: usize = 4;
const MANAGERS: usize = 3;
const CAPACITY: i32 = 2;

fn client_id(c: usize) -> String {
    format!("client-{c}")
}

fn manager_id(m: usize) -> String {
    format!("m{m}")
}

fn manager(m: usize) -> Caller {
    Caller {
        user_id: manager_id(m),
        roles: vec![Role::Manager],
        display_name: format!("Manager {m}"),
    }
}

/// Which ticket a desk action aims at: see [`Model::pick_desk`].
#[derive(Debug, Clone, Copy)]
struct Pick {
    own: bool,
    index: usize,
}

#[derive(Debug, Clone)]
enum Op {
    ClientWrites {
        client: usize,
    },
    /// The AFC verdict on one pending client message (any client's).
    Verdict {
        pick: usize,
        pass: bool,
    },
    SetReady {
        manager: usize,
    },
    SetNotReady {
        manager: usize,
    },
    Reply {
        manager: usize,
        ticket: Pick,
    },
    Note {
        manager: usize,
        ticket: Pick,
    },
    Transfer {
        manager: usize,
        ticket: Pick,
        to: usize,
    },
    Close {
        ticket: usize,
        prompt: bool,
    },
    Escalate {
        ticket: usize,
    },
    SlaBreach {
        ticket: usize,
    },
    MarkRead {
        client: usize,
        message: usize,
    },
}

fn pick() -> impl Strategy<Value = Pick> {
    (prop::bool::weighted(0.8), 0usize..16).prop_map(|(own, index)| Pick { own, index })
}

fn op() -> impl Strategy<Value = Op> {
    let client = 0..CLIENTS;
    let mgr = 0..MANAGERS;
    prop_oneof![
        5 => client.clone().prop_map(|client| Op::ClientWrites { client }),
        5 => (0usize..8, prop::bool::weighted(0.75))
            .prop_map(|(pick, pass)| Op::Verdict { pick, pass }),
        4 => mgr.clone().prop_map(|manager| Op::SetReady { manager }),
        1 => mgr.clone().prop_map(|manager| Op::SetNotReady { manager }),
        3 => (mgr.clone(), pick()).prop_map(|(manager, ticket)| Op::Reply { manager, ticket }),
        2 => (mgr.clone(), pick()).prop_map(|(manager, ticket)| Op::Note { manager, ticket }),
        2 => (mgr.clone(), pick(), mgr.clone())
            .prop_map(|(manager, ticket, to)| Op::Transfer { manager, ticket, to }),
        1 => (0usize..16, any::<bool>()).prop_map(|(ticket, prompt)| Op::Close { ticket, prompt }),
        1 => (0usize..16).prop_map(|ticket| Op::Escalate { ticket }),
        1 => (0usize..16).prop_map(|ticket| Op::SlaBreach { ticket }),
        1 => (client, 0usize..64).prop_map(|(client, message)| Op::MarkRead { client, message }),
    ]
}

// ---------------------------------------------------------------------------------------------
// The model: what exists and who may see it, in plain Rust.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Afc {
    Pending,
    Passed,
    Blocked,
}

#[derive(Debug)]
struct MTicket {
    id: Uuid,
    client: usize,
    status: TicketStatus,
    /// The manager the ticket is (or, once closed, was last) assigned to.
    holder: Option<usize>,
    priority: i32,
    escalations: u32,
    /// When it started waiting (step number): matching takes the longest-waiting first.
    waiting_since: u64,
    responded: bool,
    breached: bool,
}

#[derive(Debug)]
struct MMessage {
    id: Uuid,
    client: usize,
    afc: Afc,
    ticket: Option<usize>,
}

#[derive(Debug, Default, Clone)]
struct MManager {
    exists: bool,
    slots: i32,
    /// Step at which the manager became ready (has slots): matching prefers the longest-ready.
    ready_since: Option<u64>,
}

/// What a body token is.
#[derive(Debug, Clone, Copy)]
enum Token {
    ClientMessage(usize),
    Reply(usize),
    Note(usize),
    /// The warning that replaced a blocked client message.
    Warning(usize),
    Closing(usize),
    Prompt(usize),
}

#[derive(Debug, Default)]
struct Model {
    tickets: Vec<MTicket>,
    messages: Vec<MMessage>,
    managers: [MManager; MANAGERS],
    tokens: BTreeMap<String, Token>,
    /// Ids a client may try to mark read: messages, replies, warnings and notes.
    read_targets: Vec<(Uuid, Token)>,
    /// Per client, the ids `mark_read` accepted.
    marked: [BTreeSet<Uuid>; CLIENTS],
    next_token: u64,
    step: u64,
    stats: Stats,
}

/// How often the interesting transitions happened, printed at the end so a reader can see the
/// generator reaches them.
#[derive(Debug, Default, Clone, Copy)]
struct Stats {
    assigned: u32,
    blocked: u32,
    transferred: u32,
    closed_assigned: u32,
    reopened: u32,
    notes: u32,
    replies: u32,
}

impl Stats {
    fn add(&mut self, o: Stats) {
        self.assigned += o.assigned;
        self.blocked += o.blocked;
        self.transferred += o.transferred;
        self.closed_assigned += o.closed_assigned;
        self.reopened += o.reopened;
        self.notes += o.notes;
        self.replies += o.replies;
    }
}

impl Model {
    fn token(&mut self, kind: &str, what: Token) -> String {
        self.next_token += 1;
        let t = format!("[{kind}-{}]", self.next_token);
        self.tokens.insert(t.clone(), what);
        t
    }

    fn open_ticket_of(&self, client: usize) -> Option<usize> {
        self.tickets
            .iter()
            .position(|t| t.client == client && t.status != TicketStatus::Closed)
    }

    fn open_count(&self, m: usize) -> i32 {
        self.tickets
            .iter()
            .filter(|t| t.holder == Some(m) && t.status == TicketStatus::Assigned)
            .count() as i32
    }

    /// The manager matching gives the next ticket to: a ready one with the fewest open tickets,
    /// then the one ready longest, then by id.
    fn next_manager(&self) -> Option<usize> {
        (0..MANAGERS)
            .filter(|&m| self.managers[m].slots > 0)
            .min_by_key(|&m| {
                (
                    self.open_count(m),
                    self.managers[m].ready_since,
                    manager_id(m),
                )
            })
    }

    fn assign(&mut self, t: usize, m: usize) {
        self.stats.assigned += 1;
        self.tickets[t].status = TicketStatus::Assigned;
        self.tickets[t].holder = Some(m);
        self.take_slot(m);
    }

    fn take_slot(&mut self, m: usize) {
        let mm = &mut self.managers[m];
        mm.slots -= 1;
        if mm.slots == 0 {
            mm.ready_since = None;
        }
    }

    /// Matching as the spec states it; returns (ticket, manager) pairs in order.
    fn match_waiting(&mut self) -> Vec<(usize, usize)> {
        let mut out = Vec::new();
        loop {
            let next = self
                .tickets
                .iter()
                .enumerate()
                .filter(|(_, t)| t.status == TicketStatus::Waiting)
                .min_by_key(|(_, t)| (-t.priority, t.waiting_since, t.id))
                .map(|(i, _)| i);
            let (Some(t), Some(m)) = (next, self.next_manager()) else {
                return out;
            };
            self.assign(t, m);
            out.push((t, m));
        }
    }

    /// Who acts on which ticket: with `own`, a holder on one of their tickets (an assigned one
    /// when there is one), so the happy paths run often; otherwise manager `m` on any ticket.
    fn pick_desk(&self, m: usize, p: Pick) -> Option<(usize, usize)> {
        let held = |assigned_only: bool| -> Vec<(usize, usize)> {
            self.tickets
                .iter()
                .enumerate()
                .filter(|(_, t)| !assigned_only || t.status == TicketStatus::Assigned)
                .filter_map(|(i, t)| t.holder.map(|h| (h, i)))
                .collect()
        };
        if p.own {
            for pairs in [held(true), held(false)] {
                if !pairs.is_empty() {
                    return Some(pairs[p.index % pairs.len()]);
                }
            }
        }
        (!self.tickets.is_empty()).then(|| (m, p.index % self.tickets.len()))
    }

    fn token_ticket(&self, tok: Token) -> Option<usize> {
        match tok {
            Token::ClientMessage(i) | Token::Warning(i) => self.messages[i].ticket,
            Token::Reply(t) | Token::Note(t) | Token::Closing(t) | Token::Prompt(t) => Some(t),
        }
    }

    /// Whether `client` may see `tok` anywhere (history, events): their own chat, blocked bodies
    /// and notes excluded.
    fn client_may_see(&self, client: usize, tok: Token) -> bool {
        match tok {
            Token::ClientMessage(i) => {
                self.messages[i].client == client && self.messages[i].afc != Afc::Blocked
            }
            Token::Warning(i) => self.messages[i].client == client,
            Token::Reply(t) | Token::Closing(t) | Token::Prompt(t) => {
                self.tickets[t].client == client
            }
            Token::Note(_) => false,
        }
    }

    /// Whether an event to a manager may carry `tok`, given the tickets the manager held around
    /// the event: passed client messages, replies, notes and the closing text of those tickets.
    fn manager_event_may_carry(&self, tok: Token, held: &BTreeSet<usize>) -> bool {
        let on_held = self.token_ticket(tok).is_some_and(|t| held.contains(&t));
        match tok {
            Token::ClientMessage(i) => self.messages[i].afc == Afc::Passed && on_held,
            Token::Reply(_) | Token::Note(_) | Token::Closing(_) => on_held,
            Token::Warning(_) | Token::Prompt(_) => false,
        }
    }

    /// The bodies a manager reads on ticket `t` they hold: passed client messages and replies,
    /// plus notes when `notes`.
    fn manager_reads(&self, t: usize, notes: bool) -> BTreeSet<String> {
        self.tokens
            .iter()
            .filter(|(_, tok)| self.token_ticket(**tok) == Some(t))
            .filter(|(_, tok)| match tok {
                Token::ClientMessage(i) => self.messages[*i].afc == Afc::Passed,
                Token::Reply(_) => true,
                Token::Note(_) => notes,
                _ => false,
            })
            .map(|(s, _)| s.clone())
            .collect()
    }

    fn held_by(&self, m: usize) -> BTreeSet<usize> {
        (0..self.tickets.len())
            .filter(|&t| self.tickets[t].holder == Some(m))
            .collect()
    }
}

/// The `[kind-n]` tokens in a text.
fn tokens_in(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find('[') {
        rest = &rest[start..];
        let Some(end) = rest.find(']') else { break };
        let inner = &rest[1..end];
        if let Some((kind, n)) = inner.split_once('-')
            && !kind.is_empty()
            && kind.chars().all(|c| c.is_ascii_lowercase())
            && !n.is_empty()
            && n.chars().all(|c| c.is_ascii_digit())
        {
            out.push(rest[..=end].to_owned());
        }
        rest = &rest[1..];
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Running one sequence.

struct Run<'a> {
    store: &'a PgStore,
    model: Model,
    /// Last event seq each manager has read (the cursor a stream resumes from).
    manager_seen: [i64; MANAGERS],
    client_seen: [i64; CLIENTS],
}

fn is_not_found<T>(r: &Result<T, StoreError>) -> bool {
    matches!(r, Err(StoreError::TicketNotFound))
}

impl Run<'_> {
    async fn apply(&mut self, op: &Op) -> anyhow::Result<()> {
        let store = self.store;
        let model = &mut self.model;
        model.step += 1;
        match *op {
            Op::ClientWrites { client } => {
                let idx = model.messages.len();
                let body = model.token("cmsg", Token::ClientMessage(idx));
                let m = NewClientMessage::from_source(
                    "web",
                    format!("{}/{}", client_id(client), Uuid::new_v4()),
                    &client_id(client),
                    &format!("Client {client}"),
                    &body,
                );
                let id = m.id;
                let stored = store.record_inbound(&m).await?;
                ensure!(stored, "a new message is stored");
                model.messages.push(MMessage {
                    id,
                    client,
                    afc: Afc::Pending,
                    ticket: None,
                });
                model.read_targets.push((id, Token::ClientMessage(idx)));
                // The ticket workflow opens a ticket for a client without an open one: after a
                // close, the next message opens a new ticket (a reopening).
                if model.open_ticket_of(client).is_none() {
                    open_ticket(store, model, client).await?;
                }
            }
            Op::Verdict { pick, pass } => {
                let pending: Vec<usize> = (0..model.messages.len())
                    .filter(|&i| model.messages[i].afc == Afc::Pending)
                    .collect();
                if pending.is_empty() {
                    return Ok(());
                }
                let i = pending[pick % pending.len()];
                let client = model.messages[i].client;
                let t = match model.open_ticket_of(client) {
                    Some(t) => t,
                    None => open_ticket(store, model, client).await?,
                };
                let (verdict, warning) = if pass {
                    (Verdict::Passed, "unused".to_owned())
                } else {
                    let w = model.token("warn", Token::Warning(i));
                    model.read_targets.push((
                        message_id_for("system", &format!("blocked:{}", model.messages[i].id)),
                        Token::Warning(i),
                    ));
                    (
                        Verdict::Blocked {
                            rule: "card_number".into(),
                        },
                        w,
                    )
                };
                let applied = store
                    .apply_verdicts(
                        model.tickets[t].id,
                        &[(model.messages[i].id, verdict)],
                        &warning,
                        None,
                    )
                    .await?;
                model.messages[i].ticket = Some(t);
                model.messages[i].afc = if pass { Afc::Passed } else { Afc::Blocked };
                model.stats.blocked += u32::from(!pass);
                ensure!(
                    (applied.passed, applied.blocked) == (usize::from(pass), usize::from(!pass)),
                    "verdict counts: {applied:?}"
                );
                let queues = pass && model.tickets[t].status == TicketStatus::Open;
                ensure!(applied.queued == queues, "queued: {applied:?}");
                let mut expected = None;
                if queues {
                    model.tickets[t].status = TicketStatus::Waiting;
                    model.tickets[t].waiting_since = model.step;
                    expected = model
                        .match_waiting()
                        .into_iter()
                        .find(|&(tt, _)| tt == t)
                        .map(|(_, m)| manager_id(m));
                }
                let got = applied.assigned.map(|a| a.manager_id);
                ensure!(
                    got == expected,
                    "assignment: got {got:?}, model {expected:?}"
                );
            }
            Op::SetReady { manager: m } => {
                let r = store.set_ready(&manager(m), CAPACITY).await;
                model.managers[m].exists = true;
                let (open, slots) = (model.open_count(m), model.managers[m].slots);
                if open + slots >= CAPACITY {
                    ensure!(
                        matches!(r, Err(StoreError::AtCapacity { .. })),
                        "a manager at capacity is refused: {r:?}"
                    );
                    return Ok(());
                }
                let r = r?;
                model.managers[m].slots += 1;
                let step = model.step;
                model.managers[m].ready_since.get_or_insert(step);
                let expected = model
                    .match_waiting()
                    .into_iter()
                    .find(|&(_, mm)| mm == m)
                    .map(|(t, _)| model.tickets[t].id);
                let got = r.assigned.as_ref().map(|a| a.ticket_id);
                ensure!(
                    got == expected,
                    "set_ready assigned {got:?}, model {expected:?}"
                );
                ensure!(
                    (r.ready_slots, r.open_tickets)
                        == (model.managers[m].slots, model.open_count(m)),
                    "readiness {r:?}"
                );
            }
            Op::SetNotReady { manager: m } => {
                store.set_not_ready(&manager_id(m)).await?;
                model.managers[m].slots = 0;
                model.managers[m].ready_since = None;
            }
            Op::Reply { manager: m, ticket } => {
                let Some((m, t)) = model.pick_desk(m, ticket) else {
                    return Ok(());
                };
                let body = model.token("reply", Token::Reply(t));
                let r = store
                    .send_reply(&manager(m), model.tickets[t].id, &body, &body)
                    .await;
                let key = format!("{}/{}/{body}", manager_id(m), model.tickets[t].id);
                expect_desk_write(model, t, m, &r, "reply")?;
                if let Ok(id) = r {
                    ensure!(id == message_id_for("manager", &key), "reply id");
                    model.tickets[t].responded = true;
                    model.stats.replies += 1;
                    model.read_targets.push((id, Token::Reply(t)));
                } else {
                    model.tokens.remove(&body);
                }
            }
            Op::Note { manager: m, ticket } => {
                let Some((m, t)) = model.pick_desk(m, ticket) else {
                    return Ok(());
                };
                let body = model.token("note", Token::Note(t));
                let r = store
                    .add_note(&manager(m), model.tickets[t].id, &body, &body)
                    .await;
                expect_desk_write(model, t, m, &r, "note")?;
                match r {
                    Ok(id) => {
                        model.stats.notes += 1;
                        model.read_targets.push((id, Token::Note(t)));
                    }
                    Err(_) => {
                        model.tokens.remove(&body);
                    }
                }
            }
            Op::Transfer {
                manager: m,
                ticket,
                to,
            } => {
                let Some((m, t)) = model.pick_desk(m, ticket) else {
                    return Ok(());
                };
                // Aimed at a ready manager most of the time, so transfers do happen.
                let ready: Vec<usize> = (0..MANAGERS)
                    .filter(|&r| r != m && model.managers[r].slots > 0)
                    .collect();
                let to = match (ticket.own, ready.is_empty()) {
                    (true, false) => ready[to % ready.len()],
                    _ => to,
                };
                let r = store
                    .transfer_ticket(&manager(m), model.tickets[t].id, &manager_id(to))
                    .await;
                let tk = &model.tickets[t];
                if tk.holder != Some(m) {
                    ensure!(is_not_found(&r), "transfer of another's ticket: {r:?}");
                } else if tk.status != TicketStatus::Assigned {
                    ensure!(
                        matches!(r, Err(StoreError::TicketClosed)),
                        "transfer of a closed ticket: {r:?}"
                    );
                } else if to == m
                    || !model.managers[to].exists
                    || model.managers[to].slots == 0
                    || model.open_count(to) >= CAPACITY
                {
                    ensure!(
                        matches!(r, Err(StoreError::ManagerNotReady(_))),
                        "transfer to a manager who cannot take it: {r:?}"
                    );
                } else {
                    let a = r?;
                    ensure!(a.manager_id == manager_id(to), "transferred to {a:?}");
                    model.tickets[t].holder = Some(to);
                    model.take_slot(to);
                    model.stats.transferred += 1;
                }
            }
            Op::Close { ticket, prompt } => {
                if model.tickets.is_empty() {
                    return Ok(());
                }
                let t = ticket % model.tickets.len();
                let was_open = model.tickets[t].status != TicketStatus::Closed;
                let closing = model.token("closing", Token::Closing(t));
                let prompt = prompt.then(|| model.token("prompt", Token::Prompt(t)));
                let closed = store
                    .close_ticket(model.tickets[t].id, "resolved", &closing, prompt.as_deref())
                    .await?;
                ensure!(closed == was_open, "close_ticket answered {closed}");
                if was_open {
                    if model.tickets[t].status == TicketStatus::Assigned {
                        model.stats.closed_assigned += 1;
                    }
                    model.tickets[t].status = TicketStatus::Closed;
                } else {
                    model.tokens.remove(&closing);
                    if let Some(p) = prompt {
                        model.tokens.remove(&p);
                    }
                }
            }
            Op::Escalate { ticket } => {
                if model.tickets.is_empty() {
                    return Ok(());
                }
                let t = ticket % model.tickets.len();
                let tk = &mut model.tickets[t];
                let got = store.escalate(tk.id, tk.escalations + 1).await?;
                let expected = (tk.status == TicketStatus::Waiting).then(|| {
                    tk.escalations += 1;
                    tk.priority = (tk.priority + 1).min(3);
                    tk.priority
                });
                ensure!(got == expected, "escalate: got {got:?}, model {expected:?}");
            }
            Op::SlaBreach { ticket } => {
                if model.tickets.is_empty() {
                    return Ok(());
                }
                let t = ticket % model.tickets.len();
                let tk = &mut model.tickets[t];
                let got = store.record_sla_breach(tk.id).await?;
                let expected = !tk.breached && !tk.responded && tk.status != TicketStatus::Closed;
                tk.breached |= expected;
                ensure!(got == expected, "sla breach: got {got}, model {expected}");
            }
            Op::MarkRead { client, message } => {
                if model.read_targets.is_empty() {
                    return Ok(());
                }
                let (id, tok) = model.read_targets[message % model.read_targets.len()];
                let r = store.mark_read(&client_id(client), id).await?;
                let may = model.client_may_see(client, tok);
                ensure!(
                    r.is_some() == may,
                    "mark_read of {tok:?} by client {client}: {r:?}, model says {may}"
                );
                if may {
                    model.marked[client].insert(id);
                }
            }
        }
        Ok(())
    }

    /// Checks every manager's and client's reads against the model. `held_before` is, per
    /// manager, the tickets they held before the step (events of this step may concern those).
    async fn check(&mut self, held_before: &[BTreeSet<usize>]) -> anyhow::Result<()> {
        for (m, before) in held_before.iter().enumerate() {
            self.check_manager(m, before)
                .await
                .with_context(|| format!("manager {}", manager_id(m)))?;
        }
        for c in 0..CLIENTS {
            self.check_client(c)
                .await
                .with_context(|| format!("client {}", client_id(c)))?;
        }
        Ok(())
    }

    async fn check_manager(
        &mut self,
        m: usize,
        held_before: &BTreeSet<usize>,
    ) -> anyhow::Result<()> {
        let store = self.store;
        let model = &self.model;
        let me = manager_id(m);
        let held = model.held_by(m);
        let ids = |pred: &dyn Fn(&MTicket) -> bool| -> BTreeSet<Uuid> {
            held.iter()
                .map(|&t| &model.tickets[t])
                .filter(|t| pred(t))
                .map(|t| t.id)
                .collect()
        };
        let open = ids(&|t| t.status != TicketStatus::Closed);
        let closed = ids(&|t| t.status == TicketStatus::Closed);

        let list = store.manager_tickets(&me, &[]).await?;
        for t in &list {
            let mt = model
                .tickets
                .iter()
                .find(|x| x.id == t.id)
                .ok_or_else(|| anyhow!("unknown ticket {}", t.id))?;
            ensure!(
                t.status == mt.status && t.client_id == client_id(mt.client),
                "ticket {} listed as {:?} of {}, model {:?} of {}",
                t.id,
                t.status,
                t.client_id,
                mt.status,
                mt.client
            );
        }
        let listed: BTreeSet<Uuid> = list.iter().map(|t| t.id).collect();
        ensure!(listed.len() == list.len(), "a ticket listed twice");
        ensure!(listed == open, "manager_tickets {listed:?}, model {open:?}");
        let listed_closed: BTreeSet<Uuid> = store
            .manager_tickets(&me, &[TicketStatus::Closed])
            .await?
            .iter()
            .map(|t| t.id)
            .collect();
        ensure!(
            listed_closed == closed,
            "closed tickets {listed_closed:?}, model {closed:?}"
        );

        let mut paged = Vec::new();
        let mut after = None;
        loop {
            let page = store.manager_tickets_page(&me, &[], after, 2).await?;
            paged.extend(page.items.iter().map(|t| t.id));
            after = page.items.last().map(ticket_cursor);
            if !page.has_more {
                break;
            }
        }
        let paged_set: BTreeSet<Uuid> = paged.iter().copied().collect();
        ensure!(
            paged_set.len() == paged.len() && paged_set == open,
            "paged tickets {paged:?}, model {open:?}"
        );

        for (t, mt) in model.tickets.iter().enumerate() {
            let mine = mt.holder == Some(m);
            let one = store.manager_ticket(&me, mt.id).await;
            let msgs = store.manager_messages(&me, mt.id).await;
            if !mine {
                ensure!(
                    is_not_found(&one),
                    "reads another's ticket {}: {one:?}",
                    mt.id
                );
                ensure!(is_not_found(&msgs), "reads another's messages: {msgs:?}");
                let page = store.manager_messages_page(&me, mt.id, None, 3).await;
                ensure!(is_not_found(&page), "pages another's messages: {page:?}");
                continue;
            }
            ensure!(one?.id == mt.id, "manager_ticket");
            let read: Vec<String> = msgs?.into_iter().map(|m| m.body).collect();
            let read_set: BTreeSet<String> = read.iter().cloned().collect();
            let expected = model.manager_reads(t, false);
            ensure!(
                read_set.len() == read.len() && read_set == expected,
                "manager_messages of {}: {read:?}, model {expected:?}",
                mt.id
            );
            let mut paged = Vec::new();
            let mut after: Option<ChatCursor> = None;
            loop {
                let page = store.manager_messages_page(&me, mt.id, after, 3).await?;
                for d in &page.items {
                    let is_note = matches!(model.tokens.get(&d.message.body), Some(Token::Note(_)));
                    ensure!(d.is_note == is_note, "note flag of {:?}", d.message.body);
                    ensure!(
                        d.message.author == Author::Manager || d.message.author == Author::Client,
                        "a manager reads a {:?} message",
                        d.message.author
                    );
                }
                paged.extend(page.items.iter().map(|d| d.message.body.clone()));
                after = page.items.last().map(|d| d.cursor());
                if !page.has_more {
                    break;
                }
            }
            let paged_set: BTreeSet<String> = paged.iter().cloned().collect();
            let expected = model.manager_reads(t, true);
            ensure!(
                paged_set.len() == paged.len() && paged_set == expected,
                "manager_messages_page of {}: {paged:?}, model {expected:?}",
                mt.id
            );
        }

        // The feed behind the manager's StreamEvents, resumed from the last cursor.
        let events = store
            .manager_events_after(&me, self.manager_seen[m], 10_000)
            .await?;
        let around: BTreeSet<usize> = held.union(held_before).copied().collect();
        for e in &events {
            ensure!(
                e.manager_id.as_deref() == Some(me.as_str()),
                "event of another: {e:?}"
            );
            let t = e
                .ticket_id
                .and_then(|id| model.tickets.iter().position(|t| t.id == id))
                .ok_or_else(|| anyhow!("manager event without a known ticket: {e:?}"))?;
            ensure!(
                around.contains(&t),
                "event {} about a ticket never held: {e:?}",
                e.kind
            );
            for tok in tokens_in(&e.payload.to_string()) {
                let what = *model
                    .tokens
                    .get(&tok)
                    .ok_or_else(|| anyhow!("unknown token {tok}"))?;
                ensure!(
                    model.manager_event_may_carry(what, &around),
                    "event {} carries {tok} ({what:?})",
                    e.kind
                );
            }
            ensure!(e.seq > self.manager_seen[m], "cursor went back");
            self.manager_seen[m] = e.seq;
        }
        Ok(())
    }

    async fn check_client(&mut self, c: usize) -> anyhow::Result<()> {
        let store = self.store;
        let model = &self.model;
        let me = client_id(c);
        let expected: BTreeSet<String> = model
            .tokens
            .iter()
            .filter(|(_, tok)| model.client_may_see(c, **tok))
            .map(|(s, _)| s.clone())
            .collect();

        let history = store.client_history(&me, None, 10_000).await?;
        ensure!(!history.has_more, "history fits one page");
        let mut seen = Vec::new();
        for m in &history.messages {
            let toks = tokens_in(&m.body);
            if toks.is_empty() {
                // Service messages without a token: "... joined the chat", "... took over".
                ensure!(
                    m.author == Author::System,
                    "untokened {:?} message {m:?}",
                    m.author
                );
                continue;
            }
            ensure!(toks.len() == 1 && toks[0] == m.body, "body {:?}", m.body);
            let what = model.tokens.get(&m.body).copied();
            let author_ok = match what {
                Some(Token::ClientMessage(i)) => {
                    let want = if model.messages[i].afc == Afc::Pending {
                        "pending"
                    } else {
                        "delivered"
                    };
                    ensure!(m.status == want, "status of {}: {}", m.body, m.status);
                    m.author == Author::Client
                }
                Some(Token::Reply(_)) => m.author == Author::Manager,
                Some(Token::Warning(_) | Token::Closing(_) | Token::Prompt(_)) => {
                    m.author == Author::System
                }
                Some(Token::Note(_)) | None => false,
            };
            ensure!(author_ok, "history entry {m:?} ({what:?})");
            seen.push(m.body.clone());
        }
        let seen_set: BTreeSet<String> = seen.iter().cloned().collect();
        ensure!(
            seen_set.len() == seen.len() && seen_set == expected,
            "history {seen:?}, model {expected:?}"
        );

        // Paging back from the newest page covers the same chat in the same order.
        let mut pages = Vec::new();
        let mut before = None;
        loop {
            let page = store.client_history(&me, before, 3).await?;
            before = page.messages.first().map(|m| m.cursor());
            pages.push(page.messages.iter().map(|m| m.id).collect::<Vec<_>>());
            if !page.has_more {
                break;
            }
        }
        let paged: Vec<Uuid> = pages.into_iter().rev().flatten().collect();
        let full: Vec<Uuid> = history.messages.iter().map(|m| m.id).collect();
        ensure!(paged == full, "paged history differs from the full one");

        // The read cursor stays on a message the client was allowed to mark (it may since have
        // been blocked: the cursor is a position, it shows no content).
        let read = store.read_state(&me).await?;
        if let Some(id) = read.read_up_to {
            ensure!(
                model.marked[c].contains(&id),
                "read cursor on {id}, never marked by the client"
            );
        }

        // The feed behind the client's StreamEvents and WebSocket, re-read from the start (a
        // client may resume from 0 at any time), and resumed from the last cursor.
        const CLIENT_KINDS: [&str; 6] = [
            "message_accepted",
            "message_blocked",
            "manager_assigned",
            "manager_reply",
            "ticket_closed",
            "satisfaction_requested",
        ];
        let events = store.client_events_after(&me, 0, 10_000).await?;
        for e in &events {
            ensure!(
                e.client_id == me && e.client_visible,
                "event of another: {e:?}"
            );
            ensure!(CLIENT_KINDS.contains(&e.kind.as_str()), "kind {}", e.kind);
            for tok in tokens_in(&e.payload.to_string()) {
                let what = *model
                    .tokens
                    .get(&tok)
                    .ok_or_else(|| anyhow!("unknown token {tok}"))?;
                ensure!(
                    model.client_may_see(c, what),
                    "event {} carries {tok} ({what:?})",
                    e.kind
                );
            }
        }
        ensure!(
            events.windows(2).all(|w| w[0].seq < w[1].seq),
            "client events out of order"
        );
        let resumed = store
            .client_events_after(&me, self.client_seen[c], 10_000)
            .await?;
        let tail: Vec<i64> = events
            .iter()
            .map(|e| e.seq)
            .filter(|&s| s > self.client_seen[c])
            .collect();
        ensure!(
            resumed.iter().map(|e| e.seq).collect::<Vec<_>>() == tail,
            "a resumed feed has a gap or a duplicate"
        );
        if let Some(last) = events.last() {
            self.client_seen[c] = last.seq;
        }
        Ok(())
    }
}

async fn open_ticket(store: &PgStore, model: &mut Model, client: usize) -> anyhow::Result<usize> {
    if model.tickets.iter().any(|t| t.client == client) {
        model.stats.reopened += 1;
    }
    let id = Uuid::new_v4();
    store.open_ticket(id, &client_id(client), "v1").await?;
    model.tickets.push(MTicket {
        id,
        client,
        status: TicketStatus::Open,
        holder: None,
        priority: 1,
        escalations: 0,
        waiting_since: 0,
        responded: false,
        breached: false,
    });
    Ok(model.tickets.len() - 1)
}

/// A reply or note by `m` on ticket `t`: allowed on a ticket the manager holds and that is open;
/// a closed one of theirs is refused as closed; anyone else's is not found.
fn expect_desk_write<T: std::fmt::Debug>(
    model: &Model,
    t: usize,
    m: usize,
    r: &Result<T, StoreError>,
    what: &str,
) -> anyhow::Result<()> {
    let tk = &model.tickets[t];
    let ok = if tk.holder != Some(m) {
        is_not_found(r)
    } else if tk.status == TicketStatus::Closed {
        matches!(r, Err(StoreError::TicketClosed))
    } else {
        r.is_ok()
    };
    ensure!(
        ok,
        "{what} by {} on a {:?} ticket held by {:?}: {r:?}",
        manager_id(m),
        tk.status,
        tk.holder.map(manager_id)
    );
    Ok(())
}

async fn run_case(store: &PgStore, ops: &[Op]) -> anyhow::Result<Stats> {
    empty_database(store).await?;
    let mut run = Run {
        store,
        model: Model::default(),
        manager_seen: [0; MANAGERS],
        client_seen: [0; CLIENTS],
    };
    for (i, op) in ops.iter().enumerate() {
        let held_before: Vec<BTreeSet<usize>> =
            (0..MANAGERS).map(|m| run.model.held_by(m)).collect();
        run.apply(op)
            .await
            .with_context(|| format!("step {i}: {op:?}"))?;
        run.check(&held_before)
            .await
            .with_context(|| format!("reads after step {i}: {op:?}"))?;
    }
    Ok(run.model.stats)
}

/// Every table emptied and every sequence restarted: each case starts from a fresh store.
async fn empty_database(store: &PgStore) -> anyhow::Result<()> {
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT quote_ident(tablename) FROM pg_tables
         WHERE schemaname = 'public' AND tablename <> '_sqlx_migrations'",
    )
    .fetch_all(store.pool())
    .await?;
    sqlx::query(&format!(
        "TRUNCATE {} RESTART IDENTITY CASCADE",
        tables.join(", ")
    ))
    .execute(store.pool())
    .await?;
    Ok(())
}

fn env_number(name: &str, default: u32) -> anyhow::Result<u32> {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .with_context(|| format!("{name}={v:?} is not a number")),
        Err(_) => Ok(default),
    }
}

/// A fresh, migrated database on the server of `DATABASE_URL` (as `#[sqlx::test]` does); returns
/// the server URL and the database name.
async fn fresh_database() -> anyhow::Result<(String, String, PgStore)> {
    let url = std::env::var("DATABASE_URL")
        .or_else(|_| std::env::var("INBOX_DATABASE_URL"))
        .context("DATABASE_URL is not set: run the tests with `make test`")?;
    let name = format!("visibility_prop_{}", Uuid::new_v4().simple());
    let mut admin = sqlx::PgConnection::connect(&url)
        .await
        .with_context(|| format!("PostgreSQL is not reachable at {url}: run `make test`"))?;
    sqlx::query(&format!("CREATE DATABASE \"{name}\""))
        .execute(&mut admin)
        .await?;
    let base = url
        .rsplit_once('/')
        .map(|(b, _)| b)
        .context("DATABASE_URL has no database name")?;
    let store = PgStore::connect(&format!("{base}/{name}")).await?;
    store.migrate().await?;
    Ok((url, name, store))
}

async fn drop_database(url: &str, name: &str) -> anyhow::Result<()> {
    let mut admin = sqlx::PgConnection::connect(url).await?;
    sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
        .execute(&mut admin)
        .await?;
    Ok(())
}

#[test]
fn no_read_or_event_feed_ever_shows_anyone_something_outside_the_visibility_rules()
-> anyhow::Result<()> {
    let cases = env_number("INBOX_VISIBILITY_CASES", 4)?;
    let steps = env_number("INBOX_VISIBILITY_STEPS", 30)?.max(1) as usize;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (url, name, store) = rt.block_on(fresh_database())?;
    let mut runner = TestRunner::new(Config {
        cases,
        // The failing sequence is printed; no regression file is written next to the sources.
        failure_persistence: None,
        max_shrink_iters: 2048,
        ..Config::default()
    });
    // A fixed sequence through every transition first, so each run covers them all whatever the
    // random cases draw.
    let scripted = rt.block_on(run_case(&store, &scripted_sequence()));
    let strategy = prop::collection::vec(op(), steps.div_ceil(2)..=steps);
    let total = std::cell::Cell::new(Stats::default());
    let outcome = runner.run(&strategy, |ops| {
        let stats = rt
            .block_on(run_case(&store, &ops))
            .map_err(|e| TestCaseError::fail(format!("{e:#}")))?;
        let mut t = total.get();
        t.add(stats);
        total.set(t);
        Ok(())
    });
    eprintln!(
        "{cases} sequences of up to {steps} steps: {:?}",
        total.get()
    );
    rt.block_on(async {
        store.pool().close().await;
        drop_database(&url, &name).await
    })?;
    if let Err(e) = outcome {
        bail!("{e}");
    }
    let scripted = scripted.context("the scripted sequence")?;
    eprintln!("scripted sequence: {scripted:?}");
    ensure!(
        [
            scripted.assigned,
            scripted.blocked,
            scripted.transferred,
            scripted.closed_assigned,
            scripted.reopened,
            scripted.notes,
            scripted.replies,
        ]
        .iter()
        .all(|&n| n > 0),
        "the scripted sequence misses a transition: {scripted:?}"
    );
    Ok(())
}

fn scripted_sequence() -> Vec<Op> {
    let own = Pick {
        own: true,
        index: 0,
    };
    let pass = |pass| Op::Verdict { pick: 0, pass };
    vec![
        Op::ClientWrites { client: 0 },
        Op::ClientWrites { client: 1 },
        Op::SetReady { manager: 0 },
        pass(true),
        pass(true),
        Op::ClientWrites { client: 0 },
        pass(false),
        Op::Reply {
            manager: 0,
            ticket: own,
        },
        Op::Note {
            manager: 0,
            ticket: own,
        },
        Op::SetReady { manager: 1 },
        Op::Reply {
            manager: 2,
            ticket: Pick {
                own: false,
                index: 0,
            },
        },
        Op::SetReady { manager: 2 },
        Op::Transfer {
            manager: 0,
            ticket: own,
            to: 0,
        },
        Op::SlaBreach { ticket: 1 },
        Op::Escalate { ticket: 1 },
        Op::MarkRead {
            client: 0,
            message: 0,
        },
        Op::Close {
            ticket: 0,
            prompt: true,
        },
        Op::ClientWrites { client: 0 },
        pass(true),
        Op::SetNotReady { manager: 1 },
        Op::SetReady { manager: 2 },
        Op::MarkRead {
            client: 1,
            message: 0,
        },
    ]
}

#[test]
fn tokens_are_found_in_text_and_json() {
    assert_eq!(
        tokens_in(r#"{"body":"[cmsg-12]","x":"[a] [b-] [reply-3][note-4]"}"#),
        vec!["[cmsg-12]", "[reply-3]", "[note-4]"]
    );
}

#[sqlx::test(migrator = "tickets::store::MIGRATOR")]
async fn a_blocked_message_keeps_no_body_in_the_clients_event_feed(
    pool: sqlx::PgPool,
) -> anyhow::Result<()> {
    let store = PgStore::from_pool(pool);
    let m = NewClientMessage::from_source(
        "web",
        format!("c1/{}", Uuid::new_v4()),
        "c1",
        "C",
        "card 4111 1111 1111 1111",
    );
    let id = m.id;
    store.record_inbound(&m).await?;
    let accepted = |events: &[tickets::Event]| {
        events
            .iter()
            .find(|e| e.kind == "message_accepted")
            .map(|e| e.payload.clone())
    };
    let before = store.client_events_after("c1", 0, 100).await?;
    assert_eq!(
        accepted(&before).and_then(|p| p["body"].as_str().map(str::to_owned)),
        Some("card 4111 **** **** 1111".to_owned()),
        "while pending, the echo carries the client's own text, its card number masked"
    );
    let ticket = Uuid::new_v4();
    store.open_ticket(ticket, "c1", "v1").await?;
    store
        .apply_verdicts(
            ticket,
            &[(
                id,
                Verdict::Blocked {
                    rule: "card_number".into(),
                },
            )],
            "Never send card numbers",
            None,
        )
        .await?;
    let after = store.client_events_after("c1", 0, 100).await?;
    let echo = accepted(&after).context("the echo is still there")?;
    assert_eq!(
        (echo["body"].as_str(), echo["blocked"].as_bool()),
        (Some(""), Some(true))
    );
    assert!(
        after
            .iter()
            .all(|e| !e.payload.to_string().contains("4111")),
        "no event shows the blocked text"
    );
    let stored: Vec<String> =
        sqlx::query_scalar("SELECT payload::text FROM events UNION ALL SELECT body FROM messages")
            .fetch_all(store.pool())
            .await?;
    assert!(
        stored.iter().all(|t| !t.contains("1111 1111")),
        "the database keeps no card number in clear: {stored:?}"
    );
    Ok(())
}
