//! Telegram end to end: the three services against the Bot API emulator. A chat is a client; its
//! messages reach the manager once (however often updates are redelivered, across a crash of
//! `communication`), and replies and service messages come back to the same chat once, with rate
//! limits retried and a blocked bot recorded as a failed delivery.

use std::time::Duration;

use anyhow::{Context, bail};
use e2e::manager::{Manager, WAIT};
use e2e::telegram::Emulator;
use e2e::{Engine, Stack};
use proto::v1;
use tickets::{PgStore, Role};
use uuid::Uuid;

/// The client's delivery ledger once one of its rows has `status` after `attempts` tries (any
/// number when None). The ledger row is written after the Bot API answered, so a text the
/// emulator already shows may still be pending here for a moment.
async fn wait_for_delivery(
    store: &PgStore,
    client_id: &str,
    status: &str,
    attempts: Option<i32>,
) -> anyhow::Result<Vec<tickets::Delivery>> {
    let mut poll = testkit::Poll::new(WAIT, Duration::from_millis(100));
    let mut ledger = Vec::new();
    while poll.next().await {
        ledger = store.deliveries_of("telegram", client_id).await?;
        if ledger
            .iter()
            .any(|d| d.status == status && attempts.is_none_or(|a| d.attempts == a))
        {
            return Ok(ledger);
        }
    }
    bail!(
        "no {status} delivery (attempts {attempts:?}) for {client_id} within {WAIT:?}: {ledger:?}"
    )
}

/// An engine whose Telegram channel is bot `token` on `emulator`, with `extra` settings.
async fn telegram_engine(
    stack: &Stack,
    emulator: &Emulator,
    token: &str,
    extra: &[(&str, String)],
) -> anyhow::Result<Engine> {
    let mut env = vec![
        ("INBOX_TELEGRAM_TOKEN", token.to_owned()),
        ("INBOX_TELEGRAM_API_URL", emulator.url.clone()),
        ("INBOX_TELEGRAM_IDLE_DELAY_MS", "50".into()),
    ];
    env.extend(extra.iter().cloned());
    Engine::start_with(stack, &env).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_telegram_chat_reaches_the_manager_once_and_replies_come_back_to_the_same_chat_once()
-> anyhow::Result<()> {
    let stack = Stack::from_env().await?;
    let mut emulator = Emulator::start().await?;
    let run = Uuid::new_v4().simple().to_string();
    let token = format!("4242:{run}");
    let mut engine = telegram_engine(&stack, &emulator, &token, &[]).await?;
    let store = PgStore::connect(&engine.database_url).await?;
    let chat: i64 = 700_000 + i64::from(rand_u16(&run));
    let client_id = format!("tg:{chat}");
    let mut alice = Manager::connect(
        &engine.grpc,
        stack.token(Role::Manager, &format!("alice-{run}"), "Alice")?,
    )
    .await?;

    // In: the chat's message becomes a ticket of client tg:<chat>; the manager sees it.
    emulator
        .user_says(&token, chat, "Ivan", "Hello from Telegram")
        .await?;
    alice.set_ready().await?;
    let (ticket_id, _) = alice
        .wait_for_message(&client_id, "Hello from Telegram")
        .await?;
    // The assignment notice goes back to the chat.
    wait_for_delivery(&store, &client_id, "sent", None).await?;

    // Out: a reply reaches the chat even though Telegram first answers 429 (retry_after 1).
    emulator.rate_limit(chat, 1).await?;
    alice.reply(&ticket_id, "Let me check", "r1").await?;
    emulator
        .wait_for_bot_text(&token, chat, "Let me check", WAIT)
        .await?;
    // The rate-limited reply was sent on its second attempt.
    wait_for_delivery(&store, &client_id, "sent", Some(2)).await?;

    // Telegram repeats every update (a lost offset), then communication crashes and restarts
    // and Telegram repeats them again: each message still reaches the manager exactly once.
    assert!(emulator.redeliver(&token).await? >= 1);
    emulator.user_says(&token, chat, "Ivan", "second").await?;
    alice.wait_for_message(&client_id, "second").await?;
    engine.crash_and_restart_communication().await?;
    assert!(emulator.redeliver(&token).await? >= 2);
    emulator.user_says(&token, chat, "Ivan", "third").await?;
    let (_, bodies) = alice.wait_for_message(&client_id, "third").await?;
    for body in ["Hello from Telegram", "second", "third"] {
        assert_eq!(
            bodies.iter().filter(|b| *b == body).count(),
            1,
            "{body}: {bodies:?}"
        );
    }

    // A user who blocked the bot: the reply is recorded as a failed delivery, not dropped.
    emulator.block(chat).await?;
    alice.reply(&ticket_id, "Are you there?", "r2").await?;
    let ledger = wait_for_delivery(&store, &client_id, "failed", None).await?;
    let failed = ledger
        .iter()
        .find(|d| d.status == "failed")
        .context("failed delivery")?;
    assert!(
        failed
            .detail
            .as_deref()
            .unwrap_or_default()
            .contains("blocked"),
        "{failed:?}"
    );
    // Nothing was sent twice across the restart.
    let texts = emulator
        .wait_for_bot_text(&token, chat, "Let me check", Duration::ZERO)
        .await?;
    assert_eq!(
        texts.iter().filter(|t| *t == "Let me check").count(),
        1,
        "{texts:?}"
    );
    assert_eq!(
        ledger.iter().filter(|d| d.status == "sent").count(),
        texts.len(),
        "{ledger:?} vs {texts:?}"
    );
    Ok(())
}

fn rand_u16(seed: &str) -> u16 {
    seed.bytes()
        .fold(0u16, |h, b| h.wrapping_mul(31).wrapping_add(u16::from(b)))
}

/// A Telegram chat has the web chat's per-client budget: a message over it is not taken, and the
/// user is told in the chat when to send it again; what came before is kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chat_over_its_rate_is_told_to_slow_down_and_its_earlier_messages_are_kept()
-> anyhow::Result<()> {
    let stack = Stack::from_env().await?;
    let mut emulator = Emulator::start().await?;
    let run = Uuid::new_v4().simple().to_string();
    let token = format!("4343:{run}");
    let engine = telegram_engine(
        &stack,
        &emulator,
        &token,
        &[
            ("INBOX_RATE_LIMIT_BURST", "2".into()),
            ("INBOX_RATE_LIMIT_PER_SECOND", "0.01".into()),
        ],
    )
    .await?;
    let chat: i64 = 800_000 + i64::from(rand_u16(&run));
    let client_id = format!("tg:{chat}");
    for text in ["one", "two", "three"] {
        emulator.user_says(&token, chat, "Ivan", text).await?;
    }
    emulator
        .wait_for_bot_text_where(
            &token,
            chat,
            "the rate notice",
            |t| t.starts_with("You are sending messages too fast"),
            WAIT,
        )
        .await?;
    let db = sqlx::PgPool::connect(&engine.database_url).await?;
    let bodies: Vec<String> = e2e::eventually(WAIT, "the two messages within the budget", || {
        let (db, client_id) = (db.clone(), client_id.clone());
        async move {
            let b: Vec<String> = sqlx::query_scalar(
                "SELECT body FROM messages WHERE client_id = $1 AND author = 'client' ORDER BY created_at",
            )
            .bind(&client_id)
            .fetch_all(&db)
            .await?;
            Ok((b.len() >= 2).then_some(b))
        }
    })
    .await?;
    assert_eq!(
        bodies,
        vec!["one", "two"],
        "the third was refused, the first two kept"
    );
    Ok(())
}

/// A send a restart interrupted (claimed, outcome unknown) is never repeated on its own: the
/// ticket's manager gets a `delivery_unknown` event naming it, and `ResendDelivery` sends it
/// again, once; a delivery that went through, or another manager's, is never resent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_send_is_reported_to_the_manager_and_resent_only_when_asked()
-> anyhow::Result<()> {
    let stack = Stack::from_env().await?;
    let mut emulator = Emulator::start().await?;
    let run = Uuid::new_v4().simple().to_string();
    let token = format!("4444:{run}");
    let mut engine = telegram_engine(&stack, &emulator, &token, &[]).await?;
    let store = PgStore::connect(&engine.database_url).await?;
    let chat: i64 = 900_000 + i64::from(rand_u16(&run));
    let client_id = format!("tg:{chat}");
    let mut alice = Manager::connect(
        &engine.grpc,
        stack.token(Role::Manager, &format!("alice-{run}"), "Alice")?,
    )
    .await?;
    let mut bob = Manager::connect(
        &engine.grpc,
        stack.token(Role::Manager, &format!("bob-{run}"), "Bob")?,
    )
    .await?;
    emulator.user_says(&token, chat, "Ivan", "hello").await?;
    alice.set_ready().await?;
    let (ticket_id, _) = alice.wait_for_message(&client_id, "hello").await?;
    alice.reply(&ticket_id, "first", "r1").await?;
    emulator
        .wait_for_bot_text(&token, chat, "first", WAIT)
        .await?;

    // communication dies between claiming the next send and finishing it.
    engine.kill_communication().await?;
    alice.reply(&ticket_id, "second", "r2").await?;
    let seq: i64 = sqlx::query_scalar(
        "SELECT max(seq) FROM events WHERE kind = 'manager_reply' AND client_id = $1",
    )
    .bind(&client_id)
    .fetch_one(store.pool())
    .await?;
    sqlx::query(
        "INSERT INTO deliveries (event_seq, channel, client_id, status) VALUES ($1, 'telegram', $2, 'sending')",
    )
    .bind(seq)
    .bind(&client_id)
    .execute(store.pool())
    .await?;
    engine.start_communication().await?;
    wait_for_delivery(&store, &client_id, "unknown", None).await?;
    let (manager, about): (Option<String>, i64) = e2e::eventually(WAIT, "delivery_unknown", || {
        let pool = store.pool().clone();
        async move {
            Ok(sqlx::query_as(
                "SELECT manager_id, (payload->>'event_seq')::int8 FROM events WHERE kind = 'delivery_unknown'",
            )
            .fetch_optional(&pool)
            .await?)
        }
    })
    .await?;
    assert_eq!(
        (manager.as_deref(), about),
        (Some(format!("alice-{run}").as_str()), seq)
    );

    // Another manager cannot resend it; its manager can, and it arrives.
    let req = bob.req(v1::ResendDeliveryRequest {
        ticket_id: ticket_id.clone(),
        event_seq: seq,
    });
    let refused = bob.client.resend_delivery(req).await.err();
    assert_eq!(refused.map(|s| s.code()), Some(tonic::Code::NotFound));
    let req = alice.req(v1::ResendDeliveryRequest {
        ticket_id: ticket_id.clone(),
        event_seq: seq,
    });
    let channel = alice
        .client
        .resend_delivery(req)
        .await?
        .into_inner()
        .channel;
    assert_eq!(channel, "telegram");
    let sent = emulator
        .wait_for_bot_text(&token, chat, "second", WAIT)
        .await?;
    assert_eq!(
        sent.iter().filter(|t| *t == "second").count(),
        1,
        "{sent:?}"
    );
    e2e::eventually(WAIT, "the resent delivery recorded as sent", || {
        let (store, client_id) = (store.clone(), client_id.clone());
        async move {
            let ledger = store.deliveries_of("telegram", &client_id).await?;
            Ok(ledger
                .iter()
                .any(|d| d.event_seq == seq && d.status == "sent")
                .then_some(()))
        }
    })
    .await?;
    // Sent: never again.
    let req = alice.req(v1::ResendDeliveryRequest {
        ticket_id,
        event_seq: seq,
    });
    let again = alice.client.resend_delivery(req).await.err();
    assert_eq!(again.map(|s| s.code()), Some(tonic::Code::NotFound));
    Ok(())
}

/// A throttled recipient holds up only their own messages: while Telegram answers 429 for one
/// chat, a reply to another chat goes out at once (the throttled delivery is still waiting for its
/// retry when it arrives), and the throttled chat still gets its replies in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttled_chat_does_not_hold_up_the_others_and_keeps_its_order() -> anyhow::Result<()> {
    let stack = Stack::from_env().await?;
    let mut emulator = Emulator::start().await?;
    let run = Uuid::new_v4().simple().to_string();
    let token = format!("4545:{run}");
    let engine = telegram_engine(&stack, &emulator, &token, &[]).await?;
    let store = PgStore::connect(&engine.database_url).await?;
    let base: i64 = 600_000 + i64::from(rand_u16(&run)) * 2;
    let (slow, quick) = (base, base + 1);
    let mut alice = Manager::connect(
        &engine.grpc,
        stack.token(Role::Manager, &format!("alice-{run}"), "Alice")?,
    )
    .await?;
    let mut tickets = Vec::new();
    for chat in [slow, quick] {
        emulator.user_says(&token, chat, "Ivan", "hello").await?;
        alice.set_ready().await?;
        let (ticket, _) = alice
            .wait_for_message(&format!("tg:{chat}"), "hello")
            .await?;
        tickets.push(ticket);
    }
    // The assignment notices are out before the throttling starts.
    for chat in [slow, quick] {
        wait_for_delivery(&store, &format!("tg:{chat}"), "sent", None).await?;
    }
    emulator.rate_limit(slow, 3).await?;
    alice.reply(&tickets[0], "a1", "k1").await?;
    alice.reply(&tickets[0], "a2", "k2").await?;
    alice.reply(&tickets[1], "b1", "k3").await?;
    emulator
        .wait_for_bot_text(&token, quick, "b1", WAIT)
        .await?;
    let waiting = store
        .deliveries_of("telegram", &format!("tg:{slow}"))
        .await?;
    assert!(
        waiting.iter().any(|d| d.status == "retry"),
        "the throttled chat's reply was not waiting when the other went out: {waiting:?}"
    );
    let seen = emulator.wait_for_bot_text(&token, slow, "a2", WAIT).await?;
    let at = |t: &str| seen.iter().position(|s| s == t);
    assert!(
        at("a1").is_some() && at("a1") < at("a2"),
        "out of order: {seen:?}"
    );
    assert_eq!(seen.iter().filter(|s| *s == "a1").count(), 1, "{seen:?}");
    Ok(())
}

const PDF: &[u8] =
    b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n";
const PNG: &[u8] = &[
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52,
    0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1f, 0x15, 0xc4,
    0x89, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9c, 0x63, 0xf8, 0xcf, 0xc0, 0xf0,
    0x1f, 0x00, 0x05, 0x00, 0x01, 0xff, 0x89, 0x99, 0x3d, 0x1d, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45,
    0x4e, 0x44, 0xae, 0x42, 0x60, 0x82,
];

/// Files on Telegram: a client's document and photo are fetched from the Bot API into the object
/// store and reach the manager as files (bytes intact); one over the size limit is named in the
/// message and the client is told; a manager's file reaches the chat as a document with the
/// reply as its caption.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chats_files_reach_the_manager_and_a_managers_file_reaches_the_chat() -> anyhow::Result<()>
{
    let stack = Stack::from_env().await?;
    let mut emulator = Emulator::start().await?;
    let run = Uuid::new_v4().simple().to_string();
    let token = format!("4343:{run}");
    let engine = telegram_engine(
        &stack,
        &emulator,
        &token,
        &[("INBOX_ATTACHMENT_MAX_BYTES", "2048".into())],
    )
    .await?;
    let chat: i64 = 710_000 + i64::from(rand_u16(&run));
    let client_id = format!("tg:{chat}");
    let mut alice = Manager::connect(
        &engine.grpc,
        stack.token(Role::Manager, &format!("alice-{run}"), "Alice")?,
    )
    .await?;
    alice.set_ready().await?;

    emulator
        .user_sends_file(
            &token,
            chat,
            "statement.pdf",
            "application/pdf",
            PDF,
            "my statement",
            false,
        )
        .await?;
    let (ticket_id, _) = alice.wait_for_message(&client_id, "my statement").await?;
    let files = alice.files_of(&ticket_id).await?;
    assert_eq!(
        files
            .iter()
            .map(|f| (f.name.as_str(), f.content_type.as_str()))
            .collect::<Vec<_>>(),
        [("statement.pdf", "application/pdf")]
    );
    assert_eq!(alice.attachment(&files[0].id).await?.1, PDF);

    // A photo without a caption: a message of one file, its type taken from the content.
    emulator
        .user_sends_file(&token, chat, "", "", PNG, "", true)
        .await?;
    let mut poll = testkit::Poll::new(WAIT, Duration::from_millis(100));
    let mut photo = None;
    while photo.is_none() && poll.next().await {
        photo = alice
            .files_of(&ticket_id)
            .await?
            .into_iter()
            .find(|f| f.content_type == "image/png");
    }
    let photo = photo.context("the photo never reached the ticket")?;
    assert_eq!(alice.attachment(&photo.id).await?.1, PNG);

    // Over the limit: named in the message, told to the client, nothing stored for it.
    let big: Vec<u8> = PDF
        .iter()
        .copied()
        .chain(std::iter::repeat_n(b' ', 3000))
        .collect();
    emulator
        .user_sends_file(
            &token,
            chat,
            "big.pdf",
            "application/pdf",
            &big,
            "the big one",
            false,
        )
        .await?;
    let (_, bodies) = alice
        .wait_for_body(&client_id, "the big file's message", |b| {
            b.contains("the big one")
        })
        .await?;
    let named = bodies
        .iter()
        .find(|b| b.contains("the big one"))
        .context("big")?;
    assert!(
        named.contains("[attachment not accepted: big.pdf"),
        "{named:?}"
    );
    emulator
        .wait_for_bot_text_where(
            &token,
            chat,
            "the file notice",
            |t| t.starts_with("Some of your files were not accepted") && t.contains("big.pdf"),
            WAIT,
        )
        .await?;
    assert_eq!(alice.files_of(&ticket_id).await?.len(), 2);

    // Out: the manager's file, with the reply as its caption.
    alice
        .reply_with_file(
            &ticket_id,
            "Here is the form",
            "f1",
            ("form.pdf", "application/pdf", PDF),
        )
        .await?;
    let sent = testkit::eventually(WAIT, "the form sent to the chat", || async {
        let sent = emulator.sent_files(&token, chat).await?;
        Ok((!sent.is_empty()).then_some(sent))
    })
    .await?;
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(
        (
            sent[0].method.as_str(),
            sent[0].name.as_str(),
            sent[0].caption.as_str()
        ),
        ("sendDocument", "form.pdf", "Here is the form")
    );
    assert_eq!(sent[0].data, PDF);
    Ok(())
}
