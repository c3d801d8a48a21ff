//! The external AFC provider end to end: the three services and the `afc-emulator` binary as real
//! processes on the real stack, with `provider: kafka` in the spec. Messages are held (by the
//! inbound transaction, handed over by the store's AFC relay) while AFC is down and the workflow
//! service is killed meanwhile; once AFC is back every verdict lands.

use std::time::Duration;

use anyhow::{Context, bail};
use e2e::afc::AfcEmulator;
use e2e::{Engine, Stack};
use serde_json::json;
use sqlx::Connection;
use tickets::Role;
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(60);

async fn post(http: &reqwest::Client, base: &str, token: &str, body: &str) -> anyhow::Result<Uuid> {
    let resp = http
        .post(format!("{base}/v1/messages"))
        .bearer_auth(token)
        .json(&json!({"body": body, "client_message_id": Uuid::new_v4()}))
        .send()
        .await?;
    let status = resp.status().as_u16();
    let v: serde_json::Value = resp.json().await?;
    if status != 202 {
        bail!("POST /v1/messages answered {status}: {v}");
    }
    Ok(Uuid::parse_str(
        v["message_id"].as_str().context("no message_id")?,
    )?)
}

/// Polls `sql` (one uuid parameter, returning a bool) until it holds; fails after [`WAIT`].
async fn until(db: &mut sqlx::PgConnection, what: &str, sql: &str, id: Uuid) -> anyhow::Result<()> {
    let mut poll = testkit::Poll::new(WAIT, Duration::from_millis(100));
    while poll.next().await {
        let ok: Option<bool> = sqlx::query_scalar(sql)
            .bind(id)
            .fetch_optional(&mut *db)
            .await?;
        if ok == Some(true) {
            return Ok(());
        }
    }
    bail!("{what}: not within {WAIT:?}")
}

const STATUS: &str = "SELECT afc_status FROM messages WHERE id = $1";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_messages_survive_afc_downtime_and_a_workflow_crash_and_get_their_verdicts()
-> anyhow::Result<()> {
    let stack = Stack::from_env().await?;
    let tag = Uuid::new_v4().simple().to_string();
    let prefix = format!("e2e_afc_{tag}.");
    let dir = std::env::temp_dir().join(format!("inbox-afc-{tag}"));
    std::fs::create_dir_all(&dir)?;
    let aes_key = format!("{tag}{tag}");

    // First run of the emulator generates its key pair; then AFC goes down.
    let afc = AfcEmulator::start(&stack, &prefix, &dir, &aes_key, false).await?;
    afc.kill().await?;
    let spec = dir.join("workflows.yaml");
    std::fs::write(
        &spec,
        "version: 1\nafc:\n  provider: kafka\n  timeout: 2s\n  on_timeout: hold\n",
    )?;
    let mut engine = Engine::start_with(
        &stack,
        &[
            ("INBOX_TOPIC_PREFIX", prefix.clone()),
            ("INBOX_SPEC", spec.display().to_string()),
            ("INBOX_AFC_KEY", aes_key.clone()),
            (
                "INBOX_AFC_PUBLIC_KEY",
                AfcEmulator::public_key(&dir).display().to_string(),
            ),
        ],
    )
    .await?;
    let mut db = sqlx::PgConnection::connect(&engine.database_url).await?;
    let http = reqwest::Client::new();
    let client = stack.token(Role::Client, &format!("afc-{tag}"), "Ivan")?;
    let hello = post(&http, &engine.http, &client, "hello, my transfer is stuck").await?;
    let card = post(
        &http,
        &engine.http,
        &client,
        "my card is 4111 1111 1111 1111",
    )
    .await?;

    // AFC is down: both are handed over and held; the timeout raises an operator alert.
    for m in [hello, card] {
        until(
            &mut db,
            "handed to AFC",
            "SELECT afc_sent_at IS NOT NULL FROM messages WHERE id = $1",
            m,
        )
        .await?;
    }
    until(
        &mut db,
        "afc_timeout alert",
        "SELECT count(*) = 1 FROM events WHERE kind = 'afc_timeout' AND payload->>'message_id' = $1::text",
        hello,
    )
    .await?;
    for m in [hello, card] {
        let s: String = sqlx::query_scalar(STATUS)
            .bind(m)
            .fetch_one(&mut db)
            .await?;
        assert_eq!(s, "pending", "held, never shown unchecked");
    }

    // The workflow service dies with the verdicts outstanding; AFC comes back.
    engine.crash_and_restart_workflow().await?;
    let afc = AfcEmulator::start(&stack, &prefix, &dir, &aes_key, false).await?;
    until(
        &mut db,
        "hello passed",
        "SELECT afc_status = 'passed' FROM messages WHERE id = $1",
        hello,
    )
    .await?;
    until(
        &mut db,
        "card blocked",
        "SELECT afc_status = 'blocked' FROM messages WHERE id = $1",
        card,
    )
    .await?;
    until(
        &mut db,
        "ticket queued",
        "SELECT status = 'waiting' FROM tickets WHERE id = (SELECT ticket_id FROM messages WHERE id = $1)",
        hello,
    )
    .await?;
    // The store ran the message path: it opened the ticket, handed the messages over and applied
    // the verdicts (nothing is left in its AFC outbox), and alerted once.
    let store_checked: bool = sqlx::query_scalar(
        "SELECT checked_in_store FROM tickets WHERE id = (SELECT ticket_id FROM messages WHERE id = $1)",
    )
    .bind(hello)
    .fetch_one(&mut db)
    .await?;
    assert!(store_checked, "the inbound transaction opened the ticket");
    let in_flight: i64 = sqlx::query_scalar("SELECT count(*) FROM afc_outbox")
        .fetch_one(&mut db)
        .await?;
    assert_eq!(in_flight, 0);
    let alerts: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE kind = 'afc_timeout' AND payload->>'message_id' = $1::text",
    )
    .bind(hello)
    .fetch_one(&mut db)
    .await?;
    assert_eq!(alerts, 1, "one alert, also across the restart");
    afc.kill().await?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
