//! Queued bot commands in the store against a real PostgreSQL: a command that passed the AFC
//! check goes to the bot and to no manager, a blocked one is blocked as any message, the first
//! outcome of a command (an answer or its timeout) is its only one, and a hand-over routes the
//! command to a manager as an ordinary message. Under the bank's AFC system a command waits for
//! its verdict before the bot may answer it.

use sqlx::PgPool;
use testkit::fixtures::{CardCheck, manager, web_message};
use tickets::bots::{BotCall, BotReplyTaken, OnBotTimeout, parse_command};
use tickets::external_afc::{AfcStatus, AfcTaken, ExternalCheck};
use tickets::inbound::MessageCheck;
use tickets::{PgStore, TicketClassification, Verdict, event_kind};

/// The card rule, and two commands: `/status` (the client is told on timeout) and `/balance`
/// (a manager takes over on timeout). `external`: the bank's AFC system gives the verdicts.
struct WithCommands(CardCheck, Option<ExternalCheck>);

impl MessageCheck for WithCommands {
    fn version(&self) -> &str {
        self.0.version()
    }
    fn verdict(&self, body: &str) -> Verdict {
        self.0.verdict(body)
    }
    fn classify(&self, body: &str) -> TicketClassification {
        self.0.classify(body)
    }
    fn blocked_warning(&self) -> &str {
        self.0.blocked_warning()
    }
    fn external(&self) -> Option<ExternalCheck> {
        self.1
    }
    fn command(&self, body: &str) -> Option<BotCall> {
        let c = parse_command(body)?;
        let on_timeout = match c.name.as_str() {
            "status" => OnBotTimeout::Reply,
            "balance" => OnBotTimeout::HandOver,
            _ => return None,
        };
        Some(BotCall {
            command: c.name,
            args: c.args,
            timeout_ms: 60_000,
            on_timeout,
            timeout_message: format!("no answer ({on_timeout:?})"),
        })
    }
}

fn check() -> anyhow::Result<WithCommands> {
    Ok(WithCommands(CardCheck::new()?, None))
}

async fn send(
    store: &PgStore,
    client: &str,
    body: &str,
) -> anyhow::Result<tickets::inbound::Intake> {
    Ok(send_with(store, &check()?, client, body).await?.1)
}

/// Takes one message in with `check`; its id and what the intake did.
async fn send_with(
    store: &PgStore,
    check: &WithCommands,
    client: &str,
    body: &str,
) -> anyhow::Result<(uuid::Uuid, tickets::inbound::Intake)> {
    let m = web_message(client, body);
    let intake = store
        .intake_batch(std::slice::from_ref(&m), &[], Some(check))
        .await?;
    Ok((m.id, intake))
}

/// The client's event kinds, oldest first.
async fn client_kinds(store: &PgStore, client: &str) -> anyhow::Result<Vec<String>> {
    Ok(store
        .client_events_after(client, 0, 100)
        .await?
        .into_iter()
        .map(|e| e.kind)
        .collect())
}

/// Makes every queued command overdue (the clock is the database's).
async fn overdue(pool: &PgPool) -> anyhow::Result<()> {
    sqlx::query("UPDATE bot_commands SET due_at = now() - interval '1 second'")
        .execute(pool)
        .await?;
    Ok(())
}

#[sqlx::test(migrator = "tickets::store::MIGRATOR")]
async fn a_command_goes_to_the_bot_and_its_first_answer_to_the_clients_chat(
    pool: PgPool,
) -> anyhow::Result<()> {
    let store = PgStore::from_pool(pool);
    store.set_ready(&manager("alice"), 3).await?;
    let intake = send(&store, "ana", "/Status@InboxBot  today ").await?;
    assert_eq!(
        (intake.commands, intake.passed, intake.opened.len()),
        (1, 0, 0)
    );
    assert!(
        store.open_ticket_of("ana").await?.is_none(),
        "no ticket, no manager"
    );

    let queued = store.bot_commands_unsent(10).await?;
    assert_eq!(queued.len(), 1);
    let q = &queued[0];
    assert_eq!(
        (
            q.client_id.as_str(),
            q.channel.as_str(),
            q.command.as_str(),
            q.args.as_str()
        ),
        ("ana", "web", "status", "today")
    );
    assert!(q.due_at > q.created_at);
    store.mark_bot_commands_sent(&[q.id]).await?;
    assert!(store.bot_commands_unsent(10).await?.is_empty());

    // Another client's answer to it, and an answer to no command, change nothing.
    let c = check()?;
    assert_eq!(
        store.take_bot_reply(q.id, "bo", "leak", false, &c).await?,
        BotReplyTaken::Unknown
    );
    assert_eq!(
        store
            .take_bot_reply(uuid::Uuid::new_v4(), "ana", "x", false, &c)
            .await?,
        BotReplyTaken::Unknown
    );
    assert_eq!(
        store
            .take_bot_reply(q.id, "ana", "  All systems go. ", false, &c)
            .await?,
        BotReplyTaken::Delivered { handed_over: false }
    );
    assert_eq!(
        store
            .take_bot_reply(q.id, "ana", "second answer", false, &c)
            .await?,
        BotReplyTaken::Duplicate
    );
    // Nor does its timeout, now that it was answered.
    overdue(store.pool()).await?;
    assert!(store.time_out_bot_commands(10, &c).await?.is_empty());

    let chat = store.client_history("ana", None, 50).await?;
    let bodies: Vec<(&str, &str)> = chat
        .messages
        .iter()
        .map(|m| (m.body.as_str(), m.channel.as_str()))
        .collect();
    assert_eq!(
        bodies,
        [
            ("/Status@InboxBot  today ", "web"),
            ("All systems go.", "bot")
        ]
    );
    let events = store.client_events_after("ana", 0, 100).await?;
    let replied: Vec<_> = events
        .iter()
        .filter(|e| e.kind == event_kind::BOT_REPLIED)
        .collect();
    assert_eq!(replied.len(), 1);
    assert_eq!(replied[0].payload["body"], "All systems go.");
    assert_eq!(replied[0].payload["command"], "status");
    assert_eq!(replied[0].manager_id, None);
    // Alice was ready all along and got nothing.
    assert!(store.manager_tickets("alice", &[]).await?.is_empty());
    Ok(())
}

#[sqlx::test(migrator = "tickets::store::MIGRATOR")]
async fn a_command_the_afc_check_blocks_is_blocked_and_never_reaches_the_bot(
    pool: PgPool,
) -> anyhow::Result<()> {
    let store = PgStore::from_pool(pool);
    let intake = send(&store, "ana", "/balance 4111 1111 1111 1111").await?;
    assert_eq!((intake.commands, intake.blocked), (0, 1));
    assert!(store.bot_commands_unsent(10).await?.is_empty());
    let kinds = client_kinds(&store, "ana").await?;
    assert!(
        kinds.contains(&event_kind::MESSAGE_BLOCKED.to_owned()),
        "{kinds:?}"
    );
    // An unknown command is an ordinary message: it goes to a manager.
    let intake = send(&store, "ana", "/transfer please").await?;
    assert_eq!((intake.commands, intake.passed), (0, 1));
    Ok(())
}

#[sqlx::test(migrator = "tickets::store::MIGRATOR")]
async fn a_command_without_an_answer_in_time_tells_the_client_and_a_late_answer_is_not_shown(
    pool: PgPool,
) -> anyhow::Result<()> {
    let store = PgStore::from_pool(pool);
    store.set_ready(&manager("alice"), 3).await?;
    send(&store, "ana", "/status").await?;
    let c = check()?;
    // Not yet due: nothing happens.
    assert!(store.time_out_bot_commands(10, &c).await?.is_empty());
    assert!(store.next_bot_due().await?.is_some());
    overdue(store.pool()).await?;
    let timed_out = store.time_out_bot_commands(10, &c).await?;
    assert_eq!(timed_out.len(), 1);
    assert!(!timed_out[0].handed_over);
    assert!(store.next_bot_due().await?.is_none());
    assert_eq!(
        store
            .take_bot_reply(timed_out[0].id, "ana", "too late", false, &c)
            .await?,
        BotReplyTaken::Late
    );
    let events = store.client_events_after("ana", 0, 100).await?;
    let told: Vec<_> = events
        .iter()
        .filter(|e| e.kind == event_kind::BOT_TIMED_OUT)
        .collect();
    assert_eq!(told.len(), 1);
    assert_eq!(told[0].payload["body"], "no answer (Reply)");
    assert_eq!(told[0].payload["handed_over"], false);
    assert!(!events.iter().any(|e| e.kind == event_kind::BOT_REPLIED));
    let chat = store.client_history("ana", None, 50).await?;
    assert!(!chat.messages.iter().any(|m| m.body == "too late"));
    assert!(store.open_ticket_of("ana").await?.is_none());
    assert!(store.manager_tickets("alice", &[]).await?.is_empty());
    Ok(())
}

#[sqlx::test(migrator = "tickets::store::MIGRATOR")]
async fn a_hand_over_routes_the_command_to_a_ready_manager_as_a_message(
    pool: PgPool,
) -> anyhow::Result<()> {
    let store = PgStore::from_pool(pool);
    store.set_ready(&manager("alice"), 3).await?;
    // On timeout (the spec's `hand_over`).
    let m = web_message("ana", "/balance 40817");
    store
        .intake_batch(std::slice::from_ref(&m), &[], Some(&check()?))
        .await?;
    assert!(store.manager_tickets("alice", &[]).await?.is_empty());
    overdue(store.pool()).await?;
    let c = check()?;
    let timed_out = store.time_out_bot_commands(10, &c).await?;
    assert!(timed_out[0].handed_over);
    let tickets = store.manager_tickets("alice", &[]).await?;
    assert_eq!(
        tickets.len(),
        1,
        "the waiting ticket went to the ready manager"
    );
    let read = store.manager_messages("alice", tickets[0].id).await?;
    assert_eq!(
        read.iter()
            .map(|x| (x.id, x.body.as_str()))
            .collect::<Vec<_>>(),
        [(m.id, "/balance 40817")]
    );
    // The client heard of the timeout before the manager joined.
    let kinds = client_kinds(&store, "bo").await?;
    assert!(kinds.is_empty());
    let kinds = client_kinds(&store, "ana").await?;
    let told = kinds.iter().position(|k| k == event_kind::BOT_TIMED_OUT);
    let joined = kinds.iter().position(|k| k == event_kind::MANAGER_ASSIGNED);
    assert!(told.is_some() && told < joined, "{kinds:?}");

    // On the bot's own word (`handOver`), with the client's ticket now open: the command joins it.
    let m2 = web_message("ana", "/status");
    store
        .intake_batch(std::slice::from_ref(&m2), &[], Some(&check()?))
        .await?;
    let read = store.manager_messages("alice", tickets[0].id).await?;
    assert!(
        !read.iter().any(|x| x.id == m2.id),
        "a command is the bot's first"
    );
    assert_eq!(
        store
            .take_bot_reply(m2.id, "ana", "Connecting you.", true, &c)
            .await?,
        BotReplyTaken::Delivered { handed_over: true }
    );
    let read = store.manager_messages("alice", tickets[0].id).await?;
    assert!(read.iter().any(|x| x.id == m2.id));
    assert!(
        !read.iter().any(|x| x.body == "Connecting you."),
        "the bot's answer is the client's, not the manager's"
    );
    Ok(())
}

#[sqlx::test(migrator = "tickets::store::MIGRATOR")]
async fn under_the_banks_afc_a_command_is_the_bots_only_once_its_verdict_passed_it(
    pool: PgPool,
) -> anyhow::Result<()> {
    let store = PgStore::from_pool(pool);
    let check = WithCommands(
        CardCheck::new()?,
        Some(ExternalCheck {
            timeout_ms: 30_000,
            replies: false,
        }),
    );
    let tickets = |pool: PgPool| async move {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM tickets WHERE client_id = 'ana'")
            .fetch_one(&pool)
            .await?;
        anyhow::Ok(n)
    };

    let (status, intake) = send_with(&store, &check, "ana", "/status").await?;
    assert_eq!((intake.held, intake.commands), (1, 0));
    assert!(store.bot_commands_unsent(10).await?.is_empty());
    // An answer before the verdict (a forged or confused bot) is no command's.
    assert_eq!(
        store
            .take_bot_reply(status, "ana", "early", false, &check)
            .await?,
        BotReplyTaken::Unknown
    );
    assert_eq!(
        store
            .take_afc_verdict(status, "ana", AfcStatus::Ok, "t1", &check)
            .await?,
        AfcTaken::Command { duplicate: false }
    );
    assert!(matches!(
        store
            .take_afc_verdict(status, "ana", AfcStatus::Ok, "t1", &check)
            .await?,
        AfcTaken::Applied {
            duplicate: true,
            passed: 0,
            blocked: 0,
            ..
        }
    ));
    assert_eq!(
        tickets(store.pool().clone()).await?,
        0,
        "a command opens no ticket"
    );
    assert_eq!(
        store
            .take_bot_reply(status, "ana", "All working.", false, &check)
            .await?,
        BotReplyTaken::Delivered { handed_over: false }
    );
    let kinds = client_kinds(&store, "ana").await?;
    assert!(
        kinds.contains(&event_kind::BOT_REPLIED.to_owned()),
        "{kinds:?}"
    );

    let (card, intake) = send_with(&store, &check, "ana", "/balance 4111 1111 1111 1111").await?;
    assert_eq!(
        intake.held, 1,
        "the bank's system decides, not the built-in rule"
    );
    assert!(matches!(
        store
            .take_afc_verdict(card, "ana", AfcStatus::Suspicious, "t2", &check)
            .await?,
        AfcTaken::Applied { blocked: 1, .. }
    ));
    assert_eq!(
        tickets(store.pool().clone()).await?,
        1,
        "blocked on a ticket"
    );
    assert_eq!(
        store
            .take_bot_reply(card, "ana", "Your balance", false, &check)
            .await?,
        BotReplyTaken::Unknown,
        "a blocked command is never the bot's"
    );
    assert!(
        store
            .bot_commands_unsent(10)
            .await?
            .iter()
            .all(|c| c.id != card)
    );
    Ok(())
}
