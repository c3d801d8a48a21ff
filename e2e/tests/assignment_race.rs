//! Rules 3 and 4 under concurrency and a crash: 50 managers toggle readiness while 500 clients
//! write at once, and the workflow service is killed (SIGKILL) and restarted in the middle. In the
//! end every ticket has exactly one manager, was assigned exactly once, and no manager holds more
//! than their capacity.

use e2e::authed;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use e2e::{Engine, Stack};
use futures::StreamExt;
use proto::v1::{self, manager_service_client::ManagerServiceClient};
use sqlx::Connection;
use tickets::Role;
use tonic::Code;
use tonic::transport::Channel;
use uuid::Uuid;

const MANAGERS: usize = 50;
const CLIENTS: usize = 500;
const CAPACITY: i64 = 10;

/// SetReady until the manager is at capacity (FAILED_PRECONDITION); other errors fail.
async fn fill_up(client: &mut ManagerServiceClient<Channel>, token: &str) -> anyhow::Result<()> {
    for _ in 0..=CAPACITY {
        match client
            .set_ready(authed(token, v1::SetReadyRequest {}))
            .await
        {
            Ok(_) => {}
            Err(s) if s.code() == Code::FailedPrecondition => return Ok(()),
            Err(s) => bail!("SetReady: {s}"),
        }
    }
    bail!("SetReady never reached capacity")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_managers_and_five_hundred_clients_with_a_worker_crash_end_with_each_ticket_assigned_once()
-> anyhow::Result<()> {
    let stack = Stack::from_env().await?;
    let dir = std::env::temp_dir().join(format!("race-{}", Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir)?;
    let spec = dir.join("workflows.yaml");
    std::fs::write(
        &spec,
        format!(
            "version: 1\nafc:\n  provider: builtin\n  rules:\n    - name: card\n      detector: card_number\nassignment:\n  capacity: {CAPACITY}\n"
        ),
    )?;
    let mut engine = Engine::start_with(
        &stack,
        &[
            ("INBOX_SPEC", spec.display().to_string()),
            (
                "RUST_LOG",
                "info,rdkafka=info,temporalio_sdk_core=warn".into(),
            ),
        ],
    )
    .await?;
    let run = Uuid::new_v4().simple().to_string();
    let channel = Channel::from_shared(engine.grpc.clone())?.connect().await?;

    // Managers toggle readiness until the clients have all written.
    let writing = Arc::new(AtomicBool::new(true));
    let mut managers = Vec::new();
    for i in 0..MANAGERS {
        let token = stack.token(
            Role::Manager,
            &format!("m{i}-{run}"),
            &format!("Manager {i}"),
        )?;
        let mut client = ManagerServiceClient::new(channel.clone());
        let writing = writing.clone();
        managers.push(tokio::spawn(async move {
            let mut step = 0u64;
            while writing.load(Ordering::Relaxed) {
                step += 1;
                // A pause every few steps, from a per-manager pattern (no shared randomness).
                let r = if (step + i as u64).is_multiple_of(4) {
                    client
                        .set_not_ready(authed(&token, v1::SetNotReadyRequest {}))
                        .await
                        .map(|_| ())
                } else {
                    client
                        .set_ready(authed(&token, v1::SetReadyRequest {}))
                        .await
                        .map(|_| ())
                };
                match r {
                    Ok(()) => {}
                    Err(s) if s.code() == Code::FailedPrecondition => {}
                    // The gateway's answer when its database pool is exhausted (a busy machine,
                    // other tests next to this one): retry, as a real client would.
                    Err(s) if s.code() == Code::Unavailable => {}
                    Err(s) => bail!("manager {i}: {s}"),
                }
                tokio::task::yield_now().await;
            }
            anyhow::Ok((client, token))
        }));
    }

    // Clients write, ten at a time; the workflow service dies halfway.
    let http = reqwest::Client::new();
    let base = format!("http://{}", engine.http.trim_start_matches("http://"));
    let post = |n: usize| {
        let http = http.clone();
        let base = base.clone();
        let token = stack.token(Role::Client, &format!("c{n}-{run}"), &format!("Client {n}"));
        async move {
            let resp = http
                .post(format!("{base}/v1/messages"))
                .bearer_auth(token?)
                .json(&serde_json::json!({"body": format!("question {n}"), "client_message_id": Uuid::new_v4()}))
                .send()
                .await?;
            if resp.status().as_u16() != 202 {
                bail!("client {n}: {} {}", resp.status(), resp.text().await?);
            }
            anyhow::Ok(())
        }
    };
    let results: Vec<_> = futures::stream::iter(0..CLIENTS / 2)
        .map(post)
        .buffer_unordered(10)
        .collect()
        .await;
    results.into_iter().collect::<anyhow::Result<Vec<()>>>()?;
    engine.crash_and_restart_workflow().await?;
    let results: Vec<_> = futures::stream::iter(CLIENTS / 2..CLIENTS)
        .map(post)
        .buffer_unordered(10)
        .collect()
        .await;
    results.into_iter().collect::<anyhow::Result<Vec<()>>>()?;
    writing.store(false, Ordering::Relaxed);

    // Finally every manager fills up: total capacity equals the number of clients.
    for m in managers {
        let (mut client, token) = m.await??;
        fill_up(&mut client, &token).await?;
    }

    let mut db = sqlx::PgConnection::connect(&engine.database_url).await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(240);
    let mut listener = sqlx::postgres::PgListener::connect(&engine.database_url).await?;
    listener.listen(tickets::store::EVENTS_CHANNEL).await?;
    loop {
        let assigned: i64 =
            sqlx::query_scalar("SELECT count(*) FROM tickets WHERE status = 'assigned'")
                .fetch_one(&mut db)
                .await?;
        if assigned == CLIENTS as i64 {
            break;
        }
        if tokio::time::timeout_at(deadline, listener.recv())
            .await
            .is_err()
        {
            bail!("only {assigned} of {CLIENTS} tickets were assigned in time");
        }
    }

    let tickets: i64 = sqlx::query_scalar("SELECT count(*) FROM tickets")
        .fetch_one(&mut db)
        .await?;
    assert_eq!(tickets, CLIENTS as i64, "one ticket per client, none twice");
    let over: Vec<(String, i64)> = sqlx::query_as(
        "SELECT manager_id, count(*) FROM tickets WHERE status = 'assigned' GROUP BY manager_id HAVING count(*) > $1",
    )
    .bind(CAPACITY)
    .fetch_all(&mut db)
    .await?;
    assert!(over.is_empty(), "managers over capacity: {over:?}");
    let twice: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT ticket_id FROM events WHERE kind = 'ticket_assigned'
         GROUP BY ticket_id HAVING count(*) <> 1) x",
    )
    .fetch_one(&mut db)
    .await?;
    assert_eq!(twice, 0, "every ticket was assigned exactly once");
    let messages: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM messages WHERE author = 'client' AND afc_status = 'passed'",
    )
    .fetch_one(&mut db)
    .await?;
    assert_eq!(
        messages, CLIENTS as i64,
        "every message stored and checked exactly once"
    );
    let slots: i64 = sqlx::query_scalar("SELECT coalesce(sum(ready_slots), 0) FROM managers")
        .fetch_one(&mut db)
        .await
        .context("ready slots")?;
    assert_eq!(slots, 0, "every ready slot was used");
    Ok(())
}
