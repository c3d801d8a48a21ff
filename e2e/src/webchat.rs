//! A client of the web chat in tests: `POST /v1/messages` and the `/v1/ws` event stream.

use std::time::Duration;

use anyhow::Context;
use futures::StreamExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message as WsMessage;
use uuid::Uuid;

use crate::Engine;

pub type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Runs the browser flow `web/tests/<script>` (Debian's Chromium through playwright-core) with
/// `env`, screenshots in `shots`; fails with its log unless every step passed within `within`.
pub async fn browser_flow(
    script: &str,
    env: &[(&str, String)],
    shots: &std::path::Path,
    within: Duration,
) -> anyhow::Result<()> {
    let web = platform::workspace_root().join("web");
    anyhow::ensure!(
        web.join("dist/console/index.html").is_file(),
        "web/dist is not built: `scripts/web.sh` (make test runs it before the tests)"
    );
    std::fs::create_dir_all(shots)?;
    let mut node = tokio::process::Command::new("node");
    node.arg(web.join("tests").join(script))
        .current_dir(&web)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .env("SCREENSHOTS", shots)
        .kill_on_drop(true);
    let out = tokio::time::timeout(within, node.output())
        .await
        .with_context(|| format!("web/tests/{script} did not finish within {within:?}"))?
        .with_context(|| format!("starting node web/tests/{script}"))?;
    let log = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{log}");
    anyhow::ensure!(
        out.status.success(),
        "web/tests/{script} failed ({}): {log}",
        out.status
    );
    Ok(())
}

/// Posts `body` as a new message of the holder of `token`; the status and the JSON answer.
pub async fn post_message(
    http: &reqwest::Client,
    engine: &Engine,
    token: &str,
    body: &str,
) -> anyhow::Result<(u16, Value)> {
    let resp = http
        .post(format!("{}/v1/messages", engine.http))
        .bearer_auth(token)
        .json(&json!({"body": body, "client_message_id": Uuid::new_v4()}))
        .send()
        .await?;
    let status = resp.status().as_u16();
    Ok((status, resp.json().await.unwrap_or(Value::Null)))
}

/// The client's event stream, token in the query (as a browser sends it).
pub async fn connect(engine: &Engine, token: &str) -> anyhow::Result<Ws> {
    let url = format!(
        "ws://{}/v1/ws?token={token}",
        engine.http.trim_start_matches("http://")
    );
    Ok(tokio_tungstenite::connect_async(url).await?.0)
}

/// The next event of type `kind` on `ws`, skipping others; fails after `within`.
pub async fn next_of(ws: &mut Ws, kind: &str, within: Duration) -> anyhow::Result<Value> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let frame = tokio::time::timeout_at(deadline, ws.next())
            .await
            .with_context(|| format!("no {kind} event within {within:?}"))?
            .context("websocket closed")??;
        if let WsMessage::Text(text) = frame {
            let event: Value = serde_json::from_str(&text)?;
            if event["type"] == kind {
                return Ok(event);
            }
        }
    }
}
