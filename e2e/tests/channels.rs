//! Channel configuration and the edge's crash safety, end to end.
//!
//! - Telegram webhook mode (configured by a channels file): updates POSTed the way Telegram does,
//!   with the secret header, retried, reach the manager once; replies still go out by the Bot API.
//! - One crash test per inbound channel: `communication` runs with the test-only knob
//!   `INBOX_TEST_CRASH_AFTER_PUBLISH`, which aborts it right after Kafka acknowledged a message and
//!   before the channel's own acknowledgement (Telegram offset, IMAP `\Seen` + last UID, the
//!   webhook's 200, the web chat's 202). After a restart without the knob, the message is neither
//!   lost nor duplicated.

use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;

use anyhow::Context;
use e2e::email::{MailServer, PASSWORD};
use e2e::manager::{Manager, WAIT};
use e2e::telegram::Emulator;
use e2e::{Engine, Stack};
use serde_json::json;
use tickets::Role;
use uuid::Uuid;

const KNOB: &str = "INBOX_TEST_CRASH_AFTER_PUBLISH";
const SIGABRT: i32 = 6;

/// A fresh manager, ready for clients.
async fn ready_manager(stack: &Stack, engine: &Engine, run: &str) -> anyhow::Result<Manager> {
    let token = stack.token(Role::Manager, &format!("alice-{run}"), "Alice")?;
    let mut m = Manager::connect(&engine.grpc, token).await?;
    m.set_ready().await?;
    Ok(m)
}

fn assert_once(bodies: &[String], expected: &[&str]) {
    for body in expected {
        assert_eq!(
            bodies.iter().filter(|b| b == body).count(),
            1,
            "{body:?} exactly once: {bodies:?}"
        );
    }
}

/// Waits for the knob to abort `communication`, then restarts it without the knob.
async fn expect_crash_then_restart(engine: &mut Engine) -> anyhow::Result<()> {
    let status = engine.wait_communication_exit(WAIT).await?;
    assert_eq!(
        status.signal(),
        Some(SIGABRT),
        "communication aborted on the knob: {status:?}"
    );
    engine.set_env(KNOB, None);
    engine.start_communication().await
}

fn channels_file(run: &str, text: &str) -> anyhow::Result<PathBuf> {
    let path = std::env::temp_dir().join(format!("inbox-channels-{run}.yaml"));
    std::fs::write(&path, text)?;
    Ok(path)
}

fn chat_of(run: &str) -> i64 {
    800_000_000 + i64::from(u32::from_str_radix(&run[..6], 16).unwrap_or(1) % 1_000_000)
}

/// An update as Telegram POSTs it to a webhook.
fn update(update_id: i64, chat: i64, message_id: i64, text: &str) -> serde_json::Value {
    json!({
        "update_id": update_id,
        "message": {
            "message_id": message_id,
            "date": chrono::Utc::now().timestamp(),
            "chat": { "id": chat, "type": "private", "first_name": "Ivan" },
            "from": { "id": chat, "is_bot": false, "first_name": "Ivan", "last_name": "Petrov" },
            "text": text,
        }
    })
}

struct Webhook {
    url: String,
    secret: String,
    http: reqwest::Client,
}

impl Webhook {
    async fn post(
        &self,
        secret: Option<&str>,
        body: &serde_json::Value,
    ) -> reqwest::Result<reqwest::StatusCode> {
        let mut req = self.http.post(&self.url).json(body);
        if let Some(s) = secret {
            req = req.header("X-Telegram-Bot-Api-Secret-Token", s);
        }
        Ok(req.send().await?.status())
    }

    async fn deliver(&self, body: &serde_json::Value) -> anyhow::Result<()> {
        let status = self.post(Some(&self.secret), body).await?;
        anyhow::ensure!(
            status == reqwest::StatusCode::OK,
            "webhook answered {status}"
        );
        Ok(())
    }
}

/// The engine in webhook mode, configured by a channels file; returns it with its webhook.
async fn webhook_engine(
    stack: &Stack,
    emulator: &Emulator,
    run: &str,
    token: &str,
    extra: &[(&str, String)],
) -> anyhow::Result<(Engine, Webhook)> {
    let public_url = format!("https://bank.test/v1/telegram/hook-{run}");
    let file = channels_file(
        run,
        &format!(
            "web:\n  enabled: true\ntelegram:\n  enabled: true\n  mode: webhook\n  \
             api_url: {}\n  webhook:\n    path: /v1/telegram/hook-{run}\n    \
             public_url: {public_url}\nemail:\n  enabled: false\n",
            emulator.url
        ),
    )?;
    let secret = format!("s3cret-{run}");
    let mut envs = vec![
        ("INBOX_CHANNELS", file.display().to_string()),
        ("INBOX_TELEGRAM_TOKEN", token.to_owned()),
        ("INBOX_TELEGRAM_WEBHOOK_SECRET", secret.clone()),
    ];
    envs.extend(extra.iter().cloned());
    let engine = Engine::start_with(stack, &envs).await?;
    // communication registered the webhook with "Telegram" at start.
    assert_eq!(emulator.webhook_url(token).await?, public_url);
    let hook = Webhook {
        url: format!("{}/v1/telegram/hook-{run}", engine.http),
        secret,
        http: reqwest::Client::new(),
    };
    Ok((engine, hook))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_update_reaches_the_manager_once_however_often_telegram_retries_it()
-> anyhow::Result<()> {
    let stack = Stack::from_env().await?;
    let mut emulator = Emulator::start().await?;
    let run = Uuid::new_v4().simple().to_string();
    let token = format!("4343:{run}");
    let (engine, hook) = webhook_engine(&stack, &emulator, &run, &token, &[]).await?;
    let chat = chat_of(&run);
    let client_id = format!("tg:{chat}");

    // Only Telegram (who knows the secret) may post updates.
    let first = update(10, chat, 1, "Hello by webhook");
    assert_eq!(
        hook.post(None, &first).await?,
        reqwest::StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        hook.post(Some("wrong"), &first).await?,
        reqwest::StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        hook.post(Some(&hook.secret), &json!({"not": "an update"}))
            .await?,
        reqwest::StatusCode::BAD_REQUEST
    );
    // The update, Telegram's retry of it (same update_id), and the next update.
    hook.deliver(&first).await?;
    hook.deliver(&first).await?;
    hook.deliver(&update(11, chat, 2, "second by webhook"))
        .await?;

    let mut alice = ready_manager(&stack, &engine, &run).await?;
    let (ticket_id, bodies) = alice
        .wait_for_all(&client_id, &["Hello by webhook", "second by webhook"])
        .await?;
    assert_once(&bodies, &["Hello by webhook", "second by webhook"]);

    // Out still goes through the Bot API in webhook mode.
    alice.reply(&ticket_id, "Webhook reply", "r1").await?;
    emulator
        .wait_for_bot_text(&token, chat, "Webhook reply", WAIT)
        .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_after_the_kafka_ack_before_the_webhook_answer_loses_and_duplicates_nothing()
-> anyhow::Result<()> {
    let stack = Stack::from_env().await?;
    let emulator = Emulator::start().await?;
    let run = Uuid::new_v4().simple().to_string();
    let token = format!("4344:{run}");
    let (mut engine, mut hook) = webhook_engine(
        &stack,
        &emulator,
        &run,
        &token,
        &[(KNOB, "telegram-webhook".into())],
    )
    .await?;
    let chat = chat_of(&run);
    let body = update(20, chat, 1, "sent as communication died");

    // Kafka has the message, but Telegram never gets its 200 ...
    // The connection dies with the process (an error), or at least no 200 comes back.
    if let Ok(status) = hook.post(Some(&hook.secret), &body).await {
        assert_ne!(status, reqwest::StatusCode::OK, "no 200 before the crash");
    }
    expect_crash_then_restart(&mut engine).await?;
    // ... so Telegram retries the same update at the restarted service.
    hook.url = format!("{}/v1/telegram/hook-{run}", engine.http);
    hook.deliver(&body).await?;
    hook.deliver(&update(21, chat, 2, "after the restart"))
        .await?;

    let mut alice = ready_manager(&stack, &engine, &run).await?;
    let (_, bodies) = alice
        .wait_for_all(
            &format!("tg:{chat}"),
            &["sent as communication died", "after the restart"],
        )
        .await?;
    assert_once(
        &bodies,
        &["sent as communication died", "after the restart"],
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_after_the_kafka_ack_before_the_telegram_offset_is_stored_loses_and_duplicates_nothing()
-> anyhow::Result<()> {
    let stack = Stack::from_env().await?;
    let emulator = Emulator::start().await?;
    let run = Uuid::new_v4().simple().to_string();
    let token = format!("4345:{run}");
    let mut engine = Engine::start_with(
        &stack,
        &[
            ("INBOX_TELEGRAM_TOKEN", token.clone()),
            ("INBOX_TELEGRAM_API_URL", emulator.url.clone()),
            ("INBOX_TELEGRAM_IDLE_DELAY_MS", "50".into()),
            (KNOB, "telegram".into()),
        ],
    )
    .await?;
    let chat = chat_of(&run);
    emulator
        .user_says(&token, chat, "Ivan", "sent as communication died")
        .await?;
    // The emulator, like Telegram, returns the update again until an offset confirms it.
    expect_crash_then_restart(&mut engine).await?;
    emulator
        .user_says(&token, chat, "Ivan", "after the restart")
        .await?;

    let mut alice = ready_manager(&stack, &engine, &run).await?;
    let (_, bodies) = alice
        .wait_for_all(
            &format!("tg:{chat}"),
            &["sent as communication died", "after the restart"],
        )
        .await?;
    assert_once(
        &bodies,
        &["sent as communication died", "after the restart"],
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_after_the_kafka_ack_before_seen_and_the_uid_are_stored_loses_and_duplicates_nothing()
-> anyhow::Result<()> {
    let stack = Stack::from_env().await?;
    let run = Uuid::new_v4().simple().to_string();
    let bank = "support@bank.test";
    let ivan = format!("ivan-{run}@client.test");
    let mail = MailServer::start(&[bank]).await?;
    let mut engine = Engine::start_with(
        &stack,
        &[
            ("INBOX_IMAP_ADDR", mail.imap_addr.clone()),
            ("INBOX_IMAP_USER", bank.into()),
            ("INBOX_IMAP_PASSWORD", PASSWORD.into()),
            (KNOB, "email".into()),
        ],
    )
    .await?;
    let raw = |id: &str, body: &str| {
        format!(
            "From: {ivan}\r\nTo: {bank}\r\nSubject: transfer\r\nMessage-ID: <{id}-{run}@client.test>\r\n\
             Content-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n"
        )
    };
    mail.send(
        &ivan,
        bank,
        raw("m1", "sent as communication died").as_bytes(),
    )
    .await?;
    let status = engine.wait_communication_exit(WAIT).await?;
    assert_eq!(status.signal(), Some(SIGABRT), "{status:?}");
    // The crash hit the window: Kafka has the mail, the mailbox does not show it as imported.
    let inbox = mail.mails(bank).await?;
    assert!(inbox.len() == 1 && !inbox[0].seen, "{inbox:?}");
    engine.set_env(KNOB, None);
    engine.start_communication().await?;
    mail.send(&ivan, bank, raw("m2", "after the restart").as_bytes())
        .await?;

    let mut alice = ready_manager(&stack, &engine, &run).await?;
    let (_, bodies) = alice
        .wait_for_all(
            &format!("email:{ivan}"),
            &["sent as communication died", "after the restart"],
        )
        .await?;
    assert_once(
        &bodies,
        &["sent as communication died", "after the restart"],
    );
    testkit::eventually(WAIT, "imported mail marked seen", || async {
        let inbox = mail.mails(bank).await?;
        Ok((inbox.len() == 2 && inbox.iter().all(|m| m.seen)).then_some(()))
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_after_the_kafka_ack_before_the_web_chat_answer_loses_and_duplicates_nothing()
-> anyhow::Result<()> {
    let stack = Stack::from_env().await?;
    let run = Uuid::new_v4().simple().to_string();
    let mut engine = Engine::start_with(&stack, &[(KNOB, "web".into())]).await?;
    let user = format!("ivan-{run}");
    let token = stack.token(Role::Client, &user, "Ivan")?;
    let http = reqwest::Client::new();
    let send = |base: String, body: &'static str, id: Uuid| {
        http.post(format!("{base}/v1/messages"))
            .bearer_auth(&token)
            .json(&json!({ "body": body, "client_message_id": id }))
            .send()
    };
    let id = Uuid::new_v4();
    if let Ok(res) = send(engine.http.clone(), "sent as communication died", id).await {
        assert_ne!(
            res.status(),
            reqwest::StatusCode::ACCEPTED,
            "no 202 before the crash"
        );
    }
    expect_crash_then_restart(&mut engine).await?;
    // The client retries with the same client_message_id, as the API asks it to.
    let res = send(engine.http.clone(), "sent as communication died", id).await?;
    assert_eq!(res.status(), reqwest::StatusCode::ACCEPTED);
    let res = send(engine.http.clone(), "after the restart", Uuid::new_v4()).await?;
    assert_eq!(res.status(), reqwest::StatusCode::ACCEPTED);

    let mut alice = ready_manager(&stack, &engine, &run).await?;
    let (_, bodies) = alice
        .wait_for_all(
            &e2e::web_client(&user),
            &["sent as communication died", "after the restart"],
        )
        .await
        .context("the web client's messages")?;
    assert_once(
        &bodies,
        &["sent as communication died", "after the restart"],
    );
    Ok(())
}
