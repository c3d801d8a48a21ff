//! Telegram end to end: the three services against the Bot API emulator. A chat is a client; its
//! messages reach the manager once (however often updates are redelivered, across a crash of
//! `communication`), and replies and service messages come back to the same chat once, with rate
//! limits retried and a blocked bot recorded as a failed delivery.

use std::time::Duration;

use anyhow::{Context, bail};
use e2e::manager::{Manager, WAIT};
use e2e::telegram::Emulator;
use e2e::{Engine, Stack};
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_telegram_chat_reaches_the_manager_once_and_replies_come_back_to_the_same_chat_once()
-> anyhow::Result<()> {
    let stack = Stack::from_env().await?;
    let mut emulator = Emulator::start().await?;
    let run = Uuid::new_v4().simple().to_string();
    let token = format!("4242:{run}");
    let mut engine = Engine::start_with(
        &stack,
        &[
            ("INBOX_TELEGRAM_TOKEN", token.clone()),
            ("INBOX_TELEGRAM_API_URL", emulator.url.clone()),
            ("INBOX_TELEGRAM_IDLE_DELAY_MS", "50".into()),
        ],
    )
    .await?;
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
