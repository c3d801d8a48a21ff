//! The gRPC gateway end to end on the real stack: a manager's day, the client API, the admin API,
//! every error class, and event streams that resume after a gateway crash.

use e2e::authed;
use std::time::Duration;

use anyhow::{Context, bail};
use e2e::{Engine, Stack};
use futures::StreamExt;
use proto::v1::{
    self, admin_service_client::AdminServiceClient, client_service_client::ClientServiceClient,
    manager_service_client::ManagerServiceClient,
};
use tickets::Role;
use tonic::transport::Channel;
use tonic::{Code, Request, Status, Streaming};
use tonic_types::StatusExt;
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(60);

async fn channel(engine: &Engine) -> anyhow::Result<Channel> {
    Ok(Channel::from_shared(engine.grpc.clone())?.connect().await?)
}

/// An open `StreamEvents`; checks that cursors only grow.
struct Events {
    stream: Streaming<v1::Event>,
    last: i64,
    seen: Vec<v1::Event>,
}

impl Events {
    /// The client's `StreamEvents` from `after`.
    async fn open(
        clients: &ClientServiceClient<Channel>,
        token: &str,
        after: i64,
    ) -> anyhow::Result<Self> {
        let stream = clients
            .clone()
            .stream_events(authed(
                token,
                v1::StreamEventsRequest {
                    after_cursor: after,
                },
            ))
            .await?
            .into_inner();
        Ok(Self::new(stream, after))
    }

    fn new(stream: Streaming<v1::Event>, after: i64) -> Self {
        Self {
            stream,
            last: after,
            seen: Vec::new(),
        }
    }

    async fn next(&mut self) -> anyhow::Result<v1::Event> {
        let e = tokio::time::timeout(WAIT, self.stream.next())
            .await
            .with_context(|| format!("no event within {WAIT:?}; saw {:?}", self.kinds()))?
            .context("stream ended")??;
        if e.cursor <= self.last {
            bail!("cursors must grow: {} after {}", e.cursor, self.last);
        }
        self.last = e.cursor;
        self.seen.push(e.clone());
        Ok(e)
    }

    async fn next_of(&mut self, kind: &str) -> anyhow::Result<v1::Event> {
        loop {
            let e = self.next().await?;
            if e.kind == kind {
                return Ok(e);
            }
        }
    }

    fn kinds(&self) -> Vec<String> {
        self.seen.iter().map(|e| e.kind.clone()).collect()
    }
}

fn payload_str(e: &v1::Event, key: &str) -> Option<String> {
    match e.payload.as_ref()?.fields.get(key)?.kind.as_ref()? {
        prost_types::value::Kind::StringValue(s) => Some(s.clone()),
        _ => None,
    }
}

fn code<T: std::fmt::Debug>(r: Result<T, Status>) -> Code {
    match r {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(s) => s.code(),
    }
}

fn violated_field<T: std::fmt::Debug>(r: Result<T, Status>) -> Option<String> {
    let s = r.err()?;
    assert_eq!(s.code(), Code::InvalidArgument);
    s.get_details_bad_request()?
        .field_violations
        .first()
        .map(|v| v.field.clone())
}

#[tokio::test]
async fn a_managers_day_the_client_api_and_the_admin_api_work_over_grpc_with_every_error_class()
-> anyhow::Result<()> {
    let stack = Stack::from_env().await?;
    let engine = Engine::start(&stack).await?;
    let ch = channel(&engine).await?;
    let mut managers = ManagerServiceClient::new(ch.clone());
    let mut clients = ClientServiceClient::new(ch.clone());
    let mut admins = AdminServiceClient::new(ch);
    // Client ids name workflows on the shared Temporal server: unique per test run.
    let ivan_sub = format!("ivan-{}", Uuid::new_v4().simple());
    let ivan_id = e2e::web_client(&ivan_sub);
    let ivan = stack.token(Role::Client, &ivan_sub, "Ivan Petrov")?;
    let alice = stack.token(Role::Manager, "alice", "Alice")?;
    let bob = stack.token(Role::Manager, "bob", "Bob")?;
    let root = stack.token(Role::Admin, "root", "Back Office")?;

    let mut alice_events = Events::new(
        managers
            .stream_events(authed(&alice, v1::StreamEventsRequest { after_cursor: 0 }))
            .await?
            .into_inner(),
        0,
    );
    let mut ivan_events = Events::new(
        clients
            .stream_events(authed(&ivan, v1::StreamEventsRequest { after_cursor: 0 }))
            .await?
            .into_inner(),
        0,
    );

    // The client writes; a retry maps onto the same message; a reused key with another body fails.
    let key = Uuid::new_v4().to_string();
    let hello = v1::SendMessageRequest {
        body: "Hello, my transfer is stuck".into(),
        idempotency_key: key.clone(),
        ..Default::default()
    };
    let sent = clients
        .send_message(authed(&ivan, hello.clone()))
        .await?
        .into_inner();
    let accepted = ivan_events.next_of("message_accepted").await?;
    assert_eq!(
        payload_str(&accepted, "message_id").as_deref(),
        Some(sent.message_id.as_str())
    );
    let again = clients
        .send_message(authed(&ivan, hello.clone()))
        .await?
        .into_inner();
    assert_eq!(sent.message_id, again.message_id);
    let reused = clients
        .send_message(authed(
            &ivan,
            v1::SendMessageRequest {
                body: "something else".into(),
                idempotency_key: key,
                ..Default::default()
            },
        ))
        .await;
    assert_eq!(code(reused), Code::AlreadyExists);
    let bad_key = clients
        .send_message(authed(
            &ivan,
            v1::SendMessageRequest {
                body: "x".into(),
                idempotency_key: "not-a-uuid".into(),
                ..Default::default()
            },
        ))
        .await;
    assert_eq!(violated_field(bad_key).as_deref(), Some("idempotency_key"));

    // A manager's day: ready, list, read, reply, note.
    managers
        .set_ready(authed(&alice, v1::SetReadyRequest {}))
        .await?;
    let assigned = alice_events.next_of("ticket_assigned").await?;
    let ticket_id = assigned.ticket_id.clone();
    let listed = managers
        .list_tickets(authed(&alice, v1::ListTicketsRequest::default()))
        .await?
        .into_inner();
    assert_eq!(listed.tickets.len(), 1);
    assert_eq!(listed.tickets[0].id, ticket_id);
    assert!(listed.next_page_token.is_empty());
    let got = managers
        .get_ticket(authed(
            &alice,
            v1::GetTicketRequest {
                ticket_id: ticket_id.clone(),
            },
        ))
        .await?
        .into_inner();
    assert_eq!(
        got.ticket.map(|t| t.client_id).as_deref(),
        Some(ivan_id.as_str())
    );
    let reply = managers
        .send_reply(authed(
            &alice,
            v1::SendReplyRequest {
                ticket_id: ticket_id.clone(),
                body: "Let me check".into(),
                idempotency_key: "r1".into(),
                ..Default::default()
            },
        ))
        .await?
        .into_inner();
    managers
        .add_note(authed(
            &alice,
            v1::AddNoteRequest {
                ticket_id: ticket_id.clone(),
                body: "internal: check AML flags".into(),
                idempotency_key: "n1".into(),
            },
        ))
        .await?;
    alice_events.next_of("note_added").await?;
    let messages = managers
        .list_messages(authed(
            &alice,
            v1::ListMessagesRequest {
                ticket_id: ticket_id.clone(),
                page_size: 1,
                page_token: String::new(),
                ..Default::default()
            },
        ))
        .await?
        .into_inner();
    assert_eq!(messages.messages.len(), 1);
    assert!(messages.has_more);
    let rest = managers
        .list_messages(authed(
            &alice,
            v1::ListMessagesRequest {
                ticket_id: ticket_id.clone(),
                page_size: 0,
                page_token: messages.next_page_token.clone(),
                ..Default::default()
            },
        ))
        .await?
        .into_inner();
    let all: Vec<_> = messages.messages.iter().chain(&rest.messages).collect();
    assert_eq!(all[0].body, "Hello, my transfer is stuck");
    assert!(all.iter().any(|m| m.id == reply.message_id));
    assert!(
        all.iter()
            .any(|m| m.author == v1::Author::Note as i32 && m.body.contains("AML"))
    );

    // The client's history has the reply and never the note; reading clears the unread count.
    ivan_events.next_of("manager_reply").await?;
    let history = clients
        .list_history(authed(&ivan, v1::ListHistoryRequest::default()))
        .await?
        .into_inner();
    assert!(history.messages.iter().any(|m| m.id == reply.message_id));
    assert!(history.messages.iter().all(|m| !m.body.contains("AML")));
    assert!(ivan_events.kinds().iter().all(|k| k != "note_added"));
    assert!(history.unread_count >= 1);
    let newest = history.messages.last().context("history is empty")?;
    let read = clients
        .mark_read(authed(
            &ivan,
            v1::MarkReadRequest {
                message_id: newest.id.clone(),
            },
        ))
        .await?
        .into_inner();
    assert_eq!(read.unread_count, 0);
    let foreign = clients
        .mark_read(authed(
            &ivan,
            v1::MarkReadRequest {
                message_id: Uuid::new_v4().to_string(),
            },
        ))
        .await;
    assert_eq!(code(foreign), Code::NotFound);

    // Error classes.
    let no_token = managers
        .list_tickets(Request::new(v1::ListTicketsRequest::default()))
        .await;
    assert_eq!(code(no_token), Code::Unauthenticated);
    let bad_token = managers
        .list_tickets(authed("garbage", v1::ListTicketsRequest::default()))
        .await;
    assert_eq!(code(bad_token), Code::Unauthenticated);
    let client_as_manager = managers
        .list_tickets(authed(&ivan, v1::ListTicketsRequest::default()))
        .await;
    assert_eq!(code(client_as_manager), Code::PermissionDenied);
    let manager_as_admin = admins
        .list_managers(authed(&alice, v1::ListManagersRequest {}))
        .await;
    assert_eq!(code(manager_as_admin), Code::PermissionDenied);
    let bad_id = managers
        .get_ticket(authed(
            &alice,
            v1::GetTicketRequest {
                ticket_id: "nope".into(),
            },
        ))
        .await;
    assert_eq!(violated_field(bad_id).as_deref(), Some("ticket_id"));
    let bad_page = managers
        .list_tickets(authed(
            &alice,
            v1::ListTicketsRequest {
                page_size: 100_000,
                ..Default::default()
            },
        ))
        .await;
    assert_eq!(violated_field(bad_page).as_deref(), Some("page_size"));
    let bobs_view = managers
        .get_ticket(authed(
            &bob,
            v1::GetTicketRequest {
                ticket_id: ticket_id.clone(),
            },
        ))
        .await;
    assert_eq!(code(bobs_view), Code::NotFound, "existence does not leak");
    let bob_note = managers
        .add_note(authed(
            &bob,
            v1::AddNoteRequest {
                ticket_id: ticket_id.clone(),
                body: "x".into(),
                idempotency_key: "x".into(),
            },
        ))
        .await;
    assert_eq!(code(bob_note), Code::NotFound);

    // Transfer to a manager who is not ready fails; once bob is ready it moves the ticket.
    let early = managers
        .transfer_ticket(authed(
            &alice,
            v1::TransferTicketRequest {
                ticket_id: ticket_id.clone(),
                to_manager_id: "bob".into(),
            },
        ))
        .await;
    assert_eq!(code(early), Code::FailedPrecondition);
    managers
        .set_ready(authed(&bob, v1::SetReadyRequest {}))
        .await?;
    let moved = managers
        .transfer_ticket(authed(
            &alice,
            v1::TransferTicketRequest {
                ticket_id: ticket_id.clone(),
                to_manager_id: "bob".into(),
            },
        ))
        .await?
        .into_inner();
    assert_eq!(moved.manager_id, "bob");
    alice_events.next_of("ticket_transferred_away").await?;
    let alice_now = managers
        .get_ticket(authed(
            &alice,
            v1::GetTicketRequest {
                ticket_id: ticket_id.clone(),
            },
        ))
        .await;
    assert_eq!(
        code(alice_now),
        Code::NotFound,
        "the old manager loses access"
    );
    let bob_messages = managers
        .list_messages(authed(
            &bob,
            v1::ListMessagesRequest {
                ticket_id: ticket_id.clone(),
                ..Default::default()
            },
        ))
        .await?
        .into_inner();
    assert!(bob_messages.messages.iter().any(|m| m.body.contains("AML")));
    // Backwards, one at a time from the newest (a console scrolling up): the same conversation.
    let mut backwards: Vec<String> = Vec::new();
    let mut req = v1::ListMessagesRequest {
        ticket_id: ticket_id.clone(),
        page_size: 1,
        latest: true,
        ..Default::default()
    };
    loop {
        let page = managers
            .list_messages(authed(&bob, req.clone()))
            .await?
            .into_inner();
        backwards.splice(0..0, page.messages.iter().map(|m| m.id.clone()));
        if !page.has_more {
            break;
        }
        req = v1::ListMessagesRequest {
            ticket_id: ticket_id.clone(),
            page_size: 1,
            before: page.older_page_token,
            ..Default::default()
        };
    }
    let forwards: Vec<String> = bob_messages.messages.iter().map(|m| m.id.clone()).collect();
    assert_eq!(backwards, forwards);
    let bad = managers
        .list_messages(authed(
            &bob,
            v1::ListMessagesRequest {
                ticket_id: ticket_id.clone(),
                before: "nonsense".into(),
                ..Default::default()
            },
        ))
        .await;
    assert_eq!(violated_field(bad).as_deref(), Some("before"));

    // The canned responses of workflows.yaml, for the console's `/shortcut`.
    let canned = managers
        .list_canned_responses(authed(&bob, v1::ListCannedResponsesRequest {}))
        .await?
        .into_inner();
    assert!(
        canned
            .responses
            .iter()
            .any(|c| c.shortcut == "hello" && !c.text.is_empty()),
        "{canned:?}"
    );

    // Search: bob (who holds the ticket now) finds the client's words, alice (who gave it away)
    // nothing, the back office everything; a blank query is refused.
    let search = |query: &str| v1::SearchMessagesRequest {
        query: query.into(),
        page_size: 0,
    };
    let bobs = managers
        .search_messages(authed(&bob, search("transfers stuck")))
        .await?
        .into_inner();
    assert!(
        bobs.hits
            .iter()
            .any(|h| h.client_id == ivan_id && h.snippet.contains("[stuck]")),
        "{bobs:?}"
    );
    let alices = managers
        .search_messages(authed(&alice, search("stuck")))
        .await?
        .into_inner();
    assert!(alices.hits.is_empty(), "{alices:?}");
    let all = admins
        .search_messages(authed(&root, search("stuck")))
        .await?
        .into_inner();
    assert!(all.hits.iter().any(|h| h.client_id == ivan_id));
    let blank = managers.search_messages(authed(&bob, search("  "))).await;
    assert_eq!(violated_field(blank).as_deref(), Some("query"));

    // The back office.
    let team = admins
        .list_managers(authed(&root, v1::ListManagersRequest {}))
        .await?
        .into_inner();
    let load = |id: &str| {
        team.managers
            .iter()
            .find(|m| m.id == id)
            .map(|m| m.open_tickets)
    };
    assert_eq!((load("alice"), load("bob")), (Some(0), Some(1)));
    let open = admins
        .list_tickets(authed(
            &root,
            v1::AdminListTicketsRequest {
                statuses: vec![v1::TicketStatus::Assigned as i32],
                ..Default::default()
            },
        ))
        .await?
        .into_inner();
    assert_eq!(open.tickets.len(), 1);
    // The queue filter: the ticket was classified into `general` (workflows.yaml default).
    let by_queue = |queues: &[&str]| v1::AdminListTicketsRequest {
        queues: queues.iter().map(|q| (*q).to_owned()).collect(),
        ..Default::default()
    };
    let general = admins
        .list_tickets(authed(&root, by_queue(&["general", "cards"])))
        .await?
        .into_inner();
    assert!(!general.tickets.is_empty());
    assert!(general.tickets.iter().all(|t| t.queue == "general"));
    let fraud = admins
        .list_tickets(authed(&root, by_queue(&["fraud"])))
        .await?
        .into_inner();
    assert!(fraud.tickets.is_empty());
    let blank = admins.list_tickets(authed(&root, by_queue(&[" "]))).await;
    assert_eq!(violated_field(blank).as_deref(), Some("queues"));
    let trail = admins
        .get_audit_trail(authed(
            &root,
            v1::GetAuditTrailRequest {
                ticket_id: ticket_id.clone(),
            },
        ))
        .await?
        .into_inner();
    let kinds: Vec<&str> = trail.events.iter().map(|e| e.kind.as_str()).collect();
    for k in [
        "manager_assigned",
        "manager_reply",
        "note_added",
        "ticket_transferred_away",
    ] {
        assert!(
            kinds.contains(&k),
            "{k} missing from the audit trail {kinds:?}"
        );
    }
    assert_eq!(trail.verdicts.len(), 1);
    let spec = std::fs::read_to_string(platform::workspace_root().join("workflows.yaml"))?;
    let valid = admins
        .validate_spec(authed(&root, v1::ValidateSpecRequest { yaml: spec }))
        .await?
        .into_inner();
    assert!(valid.valid, "{}", valid.error);
    let invalid = admins
        .validate_spec(authed(
            &root,
            v1::ValidateSpecRequest {
                yaml: "version: 1\nbogus: [".into(),
            },
        ))
        .await?
        .into_inner();
    assert!(!invalid.valid && !invalid.error.is_empty());

    // Resolve: the client is told.
    managers
        .resolve_ticket(authed(
            &bob,
            v1::ResolveTicketRequest {
                ticket_id: ticket_id.clone(),
            },
        ))
        .await?;
    ivan_events.next_of("ticket_closed").await?;

    // The client answers the rating question (workflows.yaml asks it): the closed ticket is
    // rated, no new ticket opens, and the back office counts it.
    ivan_events.next_of("satisfaction_requested").await?;
    clients
        .send_message(authed(
            &ivan,
            v1::SendMessageRequest {
                body: "5".into(),
                idempotency_key: Uuid::new_v4().to_string(),
                ..Default::default()
            },
        ))
        .await?;
    let rated = ivan_events.next_of("satisfaction_recorded").await?;
    assert_eq!(
        payload_str(&rated, "ticket_id").as_deref(),
        Some(ticket_id.as_str())
    );
    let closed = admins
        .list_tickets(authed(
            &root,
            v1::AdminListTicketsRequest {
                statuses: vec![v1::TicketStatus::Closed as i32],
                ..Default::default()
            },
        ))
        .await?
        .into_inner();
    let ours = closed
        .tickets
        .iter()
        .filter_map(|t| t.ticket.as_ref())
        .find(|t| t.id == ticket_id)
        .context("the closed ticket")?;
    assert_eq!((ours.rating, ours.channel.as_str()), (5, "web"));
    let still_open = admins
        .list_tickets(authed(
            &root,
            v1::AdminListTicketsRequest {
                statuses: vec![
                    v1::TicketStatus::Open as i32,
                    v1::TicketStatus::Waiting as i32,
                ],
                ..Default::default()
            },
        ))
        .await?
        .into_inner();
    assert!(
        !still_open
            .tickets
            .iter()
            .filter_map(|t| t.ticket.as_ref())
            .any(|t| t.client_id == ivan_id),
        "the rating opened a ticket"
    );
    let stats = admins
        .get_stats(authed(&root, v1::GetStatsRequest { hours: 1 }))
        .await?
        .into_inner();
    assert_eq!(stats.ratings.len(), 5);
    assert!(stats.ratings[4] >= 1, "{:?}", stats.ratings);
    assert!(!stats.first_response_seconds.is_empty(), "bob answered");
    let bad = admins
        .get_stats(authed(&root, v1::GetStatsRequest { hours: 1000 }))
        .await;
    assert_eq!(violated_field(bad).as_deref(), Some("hours"));
    reports_count_the_day(&mut admins, &root, &alice).await?;
    a_dry_run_replays_the_day(&mut admins, &root, &alice, &ticket_id, &engine.database_url).await
}

/// workflows.yaml with every unclassified ticket sent to the `cards` queue.
fn spec_sending_the_rest_to_cards() -> anyhow::Result<String> {
    let spec = std::fs::read_to_string(platform::workspace_root().join("workflows.yaml"))?;
    let from = "default: { category: general, priority: normal, queue: general }";
    anyhow::ensure!(
        spec.contains(from),
        "workflows.yaml's classify.default changed"
    );
    Ok(spec.replace(
        from,
        "default: { category: general, priority: normal, queue: cards }",
    ))
}

/// The dry run of a changed spec over the day of the test above (ivan's transfer ticket, in
/// `general` as no rule names a queue for it), over gRPC and with `workflow simulate --json`.
async fn a_dry_run_replays_the_day(
    admins: &mut AdminServiceClient<Channel>,
    root: &str,
    alice: &str,
    ticket_id: &str,
    database_url: &str,
) -> anyhow::Result<()> {
    let changed = spec_sending_the_rest_to_cards()?;
    let run = admins
        .simulate_spec(authed(
            root,
            v1::SimulateSpecRequest {
                yaml: changed.clone(),
                ..Default::default()
            },
        ))
        .await?
        .into_inner();
    assert_eq!((run.scanned, run.simulated, run.truncated), (1, 1, false));
    let counts: Vec<(i32, i64)> = run
        .differences
        .iter()
        .map(|d| (d.kind, d.tickets))
        .collect();
    assert_eq!(counts.len(), 8, "every kind is listed");
    let queue = run
        .differences
        .iter()
        .find(|d| d.kind == v1::SimulationDifferenceKind::QueueChanged as i32)
        .context("queue changes")?;
    let examples: Vec<(&str, &str, &str)> = queue
        .examples
        .iter()
        .map(|e| (e.ticket_id.as_str(), e.before.as_str(), e.after.as_str()))
        .collect();
    assert_eq!(examples, [(ticket_id, "general", "cards")]);
    assert!(
        counts
            .iter()
            .all(|(k, n)| *n == 0 || *k == v1::SimulationDifferenceKind::QueueChanged as i32),
        "only the queue moves: {counts:?}"
    );

    let unchanged = std::fs::read_to_string(platform::workspace_root().join("workflows.yaml"))?;
    let same = admins
        .simulate_spec(authed(
            root,
            v1::SimulateSpecRequest {
                yaml: unchanged,
                ..Default::default()
            },
        ))
        .await?
        .into_inner();
    assert!(
        same.differences.iter().all(|d| d.tickets == 0),
        "the spec the ticket ran under: {:?}",
        same.differences
    );

    // Bad YAML names its line and column on the field `yaml`; a manager may not dry-run.
    let bad = admins
        .simulate_spec(authed(
            root,
            v1::SimulateSpecRequest {
                yaml: "version: 1\ntimers:\n  escalate_after: 5 minutes\n".into(),
                ..Default::default()
            },
        ))
        .await;
    let status = bad.as_ref().err().context("bad YAML was accepted")?;
    let violation = status
        .get_details_bad_request()
        .and_then(|b| b.field_violations.first().cloned())
        .context("no field violation")?;
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(violation.field, "yaml");
    assert!(
        violation.description.contains("workflows.yaml:3:19"),
        "{}",
        violation.description
    );
    let now = chrono::Utc::now().timestamp();
    let too_long = admins
        .simulate_spec(authed(
            root,
            v1::SimulateSpecRequest {
                yaml: changed.clone(),
                start_time: Some(prost_types::Timestamp {
                    seconds: now - 40 * 86_400,
                    nanos: 0,
                }),
                ..Default::default()
            },
        ))
        .await;
    assert_eq!(violated_field(too_long).as_deref(), Some("start_time"));
    let manager = admins
        .simulate_spec(authed(
            alice,
            v1::SimulateSpecRequest {
                yaml: changed.clone(),
                ..Default::default()
            },
        ))
        .await;
    assert_eq!(code(manager), Code::PermissionDenied);

    // The same from the command line, reading the engine's database.
    let file = std::env::temp_dir().join(format!("dry-run-{}.yaml", Uuid::new_v4().simple()));
    std::fs::write(&file, &changed)?;
    let out = tokio::process::Command::new(e2e::binary("workflow")?)
        .args(["simulate", "--since", "1d", "--json", "--spec"])
        .arg(&file)
        .env("INBOX_DATABASE_URL", database_url)
        .output()
        .await?;
    let table = tokio::process::Command::new(e2e::binary("workflow")?)
        .args(["simulate", "--since", "1d", "--spec"])
        .arg(&file)
        .env("INBOX_DATABASE_URL", database_url)
        .output()
        .await?;
    let _ = std::fs::remove_file(&file);
    anyhow::ensure!(
        out.status.success() && table.status.success(),
        "workflow simulate: {}{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&table.stderr)
    );
    let table = String::from_utf8(table.stdout)?;
    assert!(table.contains("1 tickets read, 1 replayed"), "{table}");
    let lines: Vec<&str> = table.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.starts_with("queue changed"))
        .context("no queue row")?;
    assert!(lines[at].trim_end().ends_with(" 1"), "{table}");
    assert!(
        lines[at + 1].contains(&format!("{ticket_id}  general -> cards")),
        "{table}"
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(json["scanned"], 1);
    let queue = json["differences"]
        .as_array()
        .and_then(|ds| ds.iter().find(|d| d["kind"] == "queue_changed"))
        .context("queue_changed in the JSON")?;
    assert_eq!(queue["tickets"], 1);
    assert_eq!(queue["examples"][0]["ticket_id"], ticket_id);
    assert_eq!(queue["examples"][0]["after"], "cards");
    Ok(())
}

/// The reports of the day of the test above: its database holds ivan's ticket only, which alice
/// got and answered first, bob held at the close, and ivan rated 5.
async fn reports_count_the_day(
    admins: &mut AdminServiceClient<Channel>,
    root: &str,
    alice: &str,
) -> anyhow::Result<()> {
    let asking = |group_by: v1::ReportGroupBy| v1::GetReportRequest {
        group_by: group_by as i32,
        ..Default::default()
    };
    let count = |d: &Option<v1::DurationStats>| d.as_ref().map(|d| d.count);
    let by_channel = admins
        .get_report(authed(root, asking(v1::ReportGroupBy::Channel)))
        .await?
        .into_inner();
    assert_eq!(by_channel.time_zone, "UTC");
    let keys: Vec<&str> = by_channel.rows.iter().map(|r| r.key.as_str()).collect();
    assert_eq!(keys, ["web"], "{by_channel:?}");
    let web = &by_channel.rows[0];
    assert_eq!(
        (web.opened, web.closed, web.ratings, web.rating_avg),
        (1, 1, 1, 5.0)
    );
    assert_eq!(web.satisfied_percent, 100.0);
    assert_eq!(
        (
            count(&web.first_response),
            count(&web.waiting),
            count(&web.resolution)
        ),
        (Some(1), Some(1), Some(1))
    );
    assert_eq!(by_channel.total.as_ref().map(|t| t.opened), Some(1));

    let by_manager = admins
        .get_report(authed(root, asking(v1::ReportGroupBy::Manager)))
        .await?
        .into_inner();
    let figures: Vec<_> = by_manager
        .rows
        .iter()
        .map(|r| {
            (
                r.key.as_str(),
                r.name.as_str(),
                count(&r.first_response),
                count(&r.waiting),
                r.closed,
                r.ratings,
            )
        })
        .collect();
    assert_eq!(
        figures,
        [
            ("alice", "Alice", Some(1), Some(1), 0, 0),
            ("bob", "Bob", Some(0), Some(0), 1, 1)
        ]
    );

    // The CSV of the last 7 days in Moscow: a header, one row per day, the ticket in one of them.
    let export = admins
        .export_report(authed(
            root,
            v1::GetReportRequest {
                time_zone: "Europe/Moscow".into(),
                ..asking(v1::ReportGroupBy::Day)
            },
        ))
        .await?
        .into_inner();
    assert_eq!(export.content_type, "text/csv; charset=utf-8");
    assert!(
        export.filename.starts_with("report-day-") && export.filename.ends_with(".csv"),
        "{}",
        export.filename
    );
    let mut csv = csv::Reader::from_reader(export.data.as_slice());
    let header: Vec<String> = csv.headers()?.iter().map(String::from).collect();
    assert_eq!(header[..3], ["day", "opened", "closed"]);
    assert!(header.iter().any(|h| h == "first_response_p90_seconds"));
    let days: Vec<csv::StringRecord> = csv.records().collect::<Result<_, _>>()?;
    assert_eq!(days.len(), 7, "{days:?}");
    let opened: Vec<&str> = days.iter().filter_map(|d| d.get(1)).collect();
    assert_eq!(
        opened.iter().filter(|n| **n == "1").count(),
        1,
        "one day has the ticket: {opened:?}"
    );

    // Bad input names its field; a manager may not read reports.
    let at = |secs: i64| prost_types::Timestamp {
        seconds: secs,
        nanos: 0,
    };
    let now = chrono::Utc::now().timestamp();
    let backwards = admins
        .get_report(authed(
            root,
            v1::GetReportRequest {
                start_time: Some(at(now)),
                end_time: Some(at(now - 3600)),
                ..Default::default()
            },
        ))
        .await;
    assert_eq!(violated_field(backwards).as_deref(), Some("end_time"));
    let too_long = admins
        .export_report(authed(
            root,
            v1::GetReportRequest {
                start_time: Some(at(now - 400 * 86_400)),
                ..Default::default()
            },
        ))
        .await;
    assert_eq!(violated_field(too_long).as_deref(), Some("start_time"));
    let nowhere = admins
        .get_report(authed(
            root,
            v1::GetReportRequest {
                time_zone: "Mars/Olympus".into(),
                ..Default::default()
            },
        ))
        .await;
    assert_eq!(violated_field(nowhere).as_deref(), Some("time_zone"));
    let manager = admins
        .get_report(authed(alice, v1::GetReportRequest::default()))
        .await;
    assert_eq!(code(manager), Code::PermissionDenied);
    Ok(())
}

#[tokio::test]
async fn an_event_stream_resumes_after_a_gateway_crash_with_no_gap_and_no_duplicate()
-> anyhow::Result<()> {
    let stack = Stack::from_env().await?;
    let mut engine = Engine::start(&stack).await?;
    let ivan = stack.token(
        Role::Client,
        &format!("ivan-{}", Uuid::new_v4().simple()),
        "Ivan",
    )?;
    let send = |clients: ClientServiceClient<Channel>, body: &'static str| {
        let ivan = ivan.clone();
        async move {
            let mut clients = clients;
            clients
                .send_message(authed(
                    &ivan,
                    v1::SendMessageRequest {
                        body: body.into(),
                        idempotency_key: Uuid::new_v4().to_string(),
                        ..Default::default()
                    },
                ))
                .await
        }
    };

    let clients = ClientServiceClient::new(channel(&engine).await?);
    let mut first = Events::open(&clients, &ivan, 0).await?;
    send(clients.clone(), "one").await?;
    send(clients.clone(), "two").await?;
    first.next_of("message_accepted").await?;
    first.next_of("message_accepted").await?;
    let cursor = first.last;

    engine.crash_and_restart_gateway().await?;
    let clients = ClientServiceClient::new(channel(&engine).await?);
    let mut resumed = Events::open(&clients, &ivan, cursor).await?;
    send(clients.clone(), "three").await?;
    resumed.next_of("message_accepted").await?;

    // Everything from the start, read fresh, is exactly what the two streams delivered.
    let mut fresh = Events::open(&clients, &ivan, 0).await?;
    let delivered: Vec<i64> = first
        .seen
        .iter()
        .chain(&resumed.seen)
        .map(|e| e.cursor)
        .collect();
    let mut again = Vec::new();
    while again.len() < delivered.len() {
        again.push(fresh.next().await?.cursor);
    }
    assert_eq!(again, delivered, "no gap and no duplicate across the crash");
    Ok(())
}

#[tokio::test]
async fn a_live_client_stream_never_echoes_a_blocked_message_and_hands_each_event_once_in_order()
-> anyhow::Result<()> {
    let stack = Stack::from_env().await?;
    // The burst below is more than a client's rate budget (which `ClientService` applies as the
    // web chat does); the limit is not what this test is about.
    let engine = Engine::start_with(&stack, &[("INBOX_RATE_LIMIT_PER_SECOND", "0".into())]).await?;
    let clients = ClientServiceClient::new(channel(&engine).await?);
    let ivan = stack.token(
        Role::Client,
        &format!("ivan-{}", Uuid::new_v4().simple()),
        "Ivan",
    )?;
    let mut live = Events::open(&clients, &ivan, 0).await?;
    let send = |body: &str| {
        let mut clients = clients.clone();
        let req = authed(
            &ivan,
            v1::SendMessageRequest {
                body: body.into(),
                idempotency_key: Uuid::new_v4().to_string(),
                ..Default::default()
            },
        );
        async move { clients.send_message(req).await }
    };
    send("hello").await?;
    let hello = live.next_of("message_accepted").await?;
    assert_eq!(payload_str(&hello, "body").as_deref(), Some("hello"));
    // Blocked in the transaction that accepted it: the live echo has no body either.
    send("my card is 4111 1111 1111 1111").await?;
    let card = live.next_of("message_accepted").await?;
    assert_eq!(payload_str(&card, "body").as_deref(), Some(""));
    let blocked = card
        .payload
        .as_ref()
        .and_then(|p| p.fields.get("blocked"))
        .and_then(|v| v.kind.clone());
    assert_eq!(blocked, Some(prost_types::value::Kind::BoolValue(true)));
    // A burst keeps its order and loses nothing, live and on a fresh read.
    for i in 0..40 {
        send(&format!("burst {i}")).await?;
    }
    let mut bodies = Vec::new();
    while bodies.len() < 40 {
        let e = live.next_of("message_accepted").await?;
        bodies.push(payload_str(&e, "body").unwrap_or_default());
    }
    let expected: Vec<String> = (0..40).map(|i| format!("burst {i}")).collect();
    assert_eq!(bodies, expected);
    let mut fresh = Events::open(&clients, &ivan, 0).await?;
    let mut again = Vec::new();
    while again.len() < live.seen.len() {
        again.push(fresh.next().await?);
    }
    let cursors = |es: &[v1::Event]| es.iter().map(|e| e.cursor).collect::<Vec<_>>();
    assert_eq!(cursors(&again), cursors(&live.seen));
    assert!(
        !again
            .iter()
            .any(|e| payload_str(e, "body").is_some_and(|b| b.contains("4111")))
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_over_its_rate_is_told_when_to_retry_over_grpc_as_on_the_web_and_others_are_not_held_back()
-> anyhow::Result<()> {
    let stack = Stack::from_env().await?;
    let engine = Engine::start_with(
        &stack,
        &[
            ("INBOX_RATE_LIMIT_BURST", "2".into()),
            ("INBOX_RATE_LIMIT_PER_SECOND", "0.1".into()),
        ],
    )
    .await?;
    let mut clients = ClientServiceClient::new(channel(&engine).await?);
    let token = |name: &str| {
        stack.token(
            Role::Client,
            &format!("{name}-{}", Uuid::new_v4().simple()),
            name,
        )
    };
    let (ivan, petr) = (token("ivan")?, token("petr")?);
    for _ in 0..2 {
        clients
            .list_history(authed(&ivan, v1::ListHistoryRequest::default()))
            .await?;
    }
    let refused = clients
        .list_history(authed(&ivan, v1::ListHistoryRequest::default()))
        .await
        .err()
        .context("a third call before the refill is refused")?;
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    let retry = refused
        .get_details_retry_info()
        .and_then(|r| r.retry_delay)
        .context("a RetryInfo detail")?;
    assert!((1..=10).contains(&retry.as_secs()), "{retry:?}");
    // The budget is per client, and the web chat applies the same one (in its own process).
    clients
        .list_history(authed(&petr, v1::ListHistoryRequest::default()))
        .await?;
    let read = format!(
        "http://{}/v1/read",
        engine.http.trim_start_matches("http://")
    );
    let http = reqwest::Client::new();
    let mut statuses = Vec::new();
    for _ in 0..3 {
        statuses.push(
            http.get(&read)
                .bearer_auth(&petr)
                .send()
                .await?
                .status()
                .as_u16(),
        );
    }
    assert_eq!(statuses, vec![200, 200, 429]);

    // Manager actions have the same per-caller budget: one console spamming `SetReady` is told
    // to wait, another manager is not held back.
    let mut managers = ManagerServiceClient::new(channel(&engine).await?);
    let manager = |name: &str| {
        stack.token(
            Role::Manager,
            &format!("{name}-{}", Uuid::new_v4().simple()),
            name,
        )
    };
    let (spammer, calm) = (manager("spam")?, manager("calm")?);
    for _ in 0..2 {
        managers
            .set_ready(authed(&spammer, v1::SetReadyRequest {}))
            .await?;
    }
    let refused = managers
        .set_ready(authed(&spammer, v1::SetReadyRequest {}))
        .await
        .err()
        .context("a manager over the rate is refused")?;
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(refused.get_details_retry_info().is_some(), "{refused:?}");
    managers
        .set_ready(authed(&calm, v1::SetReadyRequest {}))
        .await?;
    Ok(())
}

/// Presence: a manager who said "ready" and left (no console stream) stops receiving clients
/// once `INBOX_READY_LAPSE_SECS` passed; one whose console keeps its stream open stays ready and
/// gets the next client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_slots_lapse_when_the_managers_console_is_gone() -> anyhow::Result<()> {
    let stack = Stack::from_env().await?;
    let engine = Engine::start_with(&stack, &[("INBOX_READY_LAPSE_SECS", "2".into())]).await?;
    let id = |name: &str| format!("{name}-{}", Uuid::new_v4().simple());
    let (gone_id, here_id) = (id("gone"), id("here"));
    let mut gone =
        e2e::manager::Manager::connect(&engine.grpc, stack.token(Role::Manager, &gone_id, "Gone")?)
            .await?;
    let mut here =
        e2e::manager::Manager::connect(&engine.grpc, stack.token(Role::Manager, &here_id, "Here")?)
            .await?;
    // The present manager's console: an open stream, kept for the whole test.
    let req = here.req(v1::StreamEventsRequest { after_cursor: 0 });
    let _console = here.client.stream_events(req).await?.into_inner();
    gone.set_ready().await?;
    here.set_ready().await?;
    let db = sqlx::PgPool::connect(&engine.database_url).await?;
    let slots = |who: String| {
        let db = db.clone();
        async move {
            let n: i32 = sqlx::query_scalar("SELECT ready_slots FROM managers WHERE id = $1")
                .bind(who)
                .fetch_one(&db)
                .await?;
            anyhow::Ok(n)
        }
    };
    e2e::eventually(
        Duration::from_secs(30),
        "the absent manager's ready lapsed",
        || {
            let s = slots(gone_id.clone());
            async move { Ok((s.await? == 0).then_some(())) }
        },
    )
    .await?;
    assert_eq!(
        slots(here_id.clone()).await?,
        1,
        "the present manager is still ready"
    );
    // The next client goes to the manager who is there.
    let subject = id("client");
    let client = e2e::web_client(&subject);
    let token = stack.token(Role::Client, &subject, "Client")?;
    let (status, answer) =
        e2e::webchat::post_message(&reqwest::Client::new(), &engine, &token, "hello").await?;
    anyhow::ensure!(status == 202, "{status} {answer}");
    here.wait_for_message(&client, "hello").await?;
    assert!(
        gone.tickets(Vec::new()).await?.is_empty(),
        "the absent manager got a client"
    );
    Ok(())
}
