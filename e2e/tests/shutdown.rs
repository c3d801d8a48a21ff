//! SIGTERM, as Kubernetes sends it: every service stops within its deadline
//! (`INBOX_SHUTDOWN_SECS`), and the streams it served are told to reconnect: a WebSocket closes
//! with 1001 ("going away"), a gRPC stream ends `UNAVAILABLE` with the cursor to resume from.

use std::time::Duration;

use e2e::manager::Manager;
use e2e::{Engine, Stack};
use tickets::Role;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use uuid::Uuid;

/// The services' deadline in this test, and how long the test gives them (a little more).
const DEADLINE_SECS: u64 = 8;
const WITHIN: Duration = Duration::from_secs(DEADLINE_SECS + 4);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_each_service_within_its_deadline_and_tells_streams_to_reconnect()
-> anyhow::Result<()> {
    let stack = Stack::from_env().await?;
    let mut engine = Engine::start_with(
        &stack,
        &[("INBOX_SHUTDOWN_SECS", DEADLINE_SECS.to_string())],
    )
    .await?;
    let run = Uuid::new_v4().simple().to_string();
    let client = stack.token(Role::Client, &format!("ivan-{run}"), "Ivan")?;
    let manager = stack.token(Role::Manager, &format!("alice-{run}"), "Alice")?;

    let url = format!(
        "ws://{}/v1/ws?token={client}",
        engine.http.trim_start_matches("http://")
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await?;
    let alice = Manager::connect(&engine.grpc, manager).await?;
    let mut stream = alice.events().await?;

    let status = engine.terminate("communication", WITHIN).await?;
    assert!(status.success(), "communication exited with {status}");
    let close = e2e::ws_close_frame(&mut ws, WITHIN).await?;
    assert_eq!(close.map(|f| f.code), Some(CloseCode::Away));

    let status = engine.terminate("gateway", WITHIN).await?;
    assert!(status.success(), "gateway exited with {status}");
    let end = e2e::stream_end_status(&mut stream, WITHIN).await?;
    assert_eq!(end.code(), tonic::Code::Unavailable, "{end:?}");
    assert!(gateway::stream::resume_cursor(&end).is_some(), "{end:?}");

    let status = engine.terminate("workflow", WITHIN).await?;
    assert!(status.success(), "workflow exited with {status}");
    Ok(())
}
