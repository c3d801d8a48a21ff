//! Typing indicators both ways across the two edges: a client typing in the web chat (HTTP) is
//! shown to the manager of their assigned ticket on the gateway's stream, and the manager typing
//! (gRPC) is shown on the client's WebSocket; neither moves a resume cursor, and a manager can
//! signal only in a ticket of theirs.

use std::time::Duration;

use anyhow::Context;
use e2e::manager::Manager;
use e2e::{Engine, Stack, webchat};
use futures::StreamExt;
use proto::v1;
use tickets::Role;
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_side_sees_the_other_typing_and_no_cursor_moves() -> anyhow::Result<()> {
    let stack = Stack::from_env().await?;
    let engine = Engine::start(&stack).await?;
    let run = Uuid::new_v4().simple().to_string();
    let subject = format!("ivan-{run}");
    let client = stack.token(Role::Client, &subject, "Ivan")?;
    let http = reqwest::Client::new();
    let mut ws = webchat::connect(&engine, &client).await?;
    let (status, _) = webchat::post_message(&http, &engine, &client, "hello").await?;
    assert_eq!(status, 202);
    let mut alice = Manager::connect(
        &engine.grpc,
        stack.token(Role::Manager, &format!("alice-{run}"), "Alice")?,
    )
    .await?;
    alice.set_ready().await?;
    let (ticket_id, _) = alice
        .wait_for_message(&e2e::web_client(&subject), "hello")
        .await?;
    webchat::next_of(&mut ws, "manager_assigned", WAIT).await?;
    let mut stream = alice.events().await?;

    // The client types: the manager's stream shows it, with no cursor of its own.
    let typed = http
        .post(format!("{}/v1/typing", engine.http))
        .bearer_auth(&client)
        .send()
        .await?;
    assert_eq!(typed.status(), 204);
    let shown = tokio::time::timeout(WAIT, async {
        while let Some(e) = stream.next().await {
            let e = e?;
            if e.kind == "typing" {
                return anyhow::Ok(e);
            }
        }
        anyhow::bail!("the stream ended")
    })
    .await
    .context("no typing event for the manager")??;
    assert_eq!(
        (shown.cursor, shown.ticket_id.as_str()),
        (0, ticket_id.as_str())
    );

    // The manager types: the client's WebSocket shows it (event_id 0).
    alice
        .client
        .clone()
        .send_typing(alice.req(v1::SendTypingRequest {
            ticket_id: ticket_id.clone(),
        }))
        .await?;
    let frame = webchat::next_of(&mut ws, "typing", WAIT).await?;
    assert_eq!(frame["event_id"], 0);
    assert_eq!(frame["by"], "manager");
    assert_eq!(frame["manager_name"], "Alice");

    // Not a ticket of hers: NOT_FOUND.
    let other = alice
        .client
        .clone()
        .send_typing(alice.req(v1::SendTypingRequest {
            ticket_id: Uuid::new_v4().to_string(),
        }))
        .await
        .err()
        .context("typing in somebody else's ticket was accepted")?;
    assert_eq!(other.code(), tonic::Code::NotFound);
    Ok(())
}
