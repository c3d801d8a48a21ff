//! The sending side of the load: the client edge as it moves across restarts, the test's
//! clients and their messages, and a send retried with its idempotency key until accepted.

use super::*;

/// The engine's client edge as it moves: each restart binds new ports.
#[derive(Clone)]
pub(super) struct Edge {
    pub(super) http: watch::Receiver<String>,
    pub(super) grpc: watch::Receiver<String>,
    /// One gRPC channel per gateway address, shared by every sender and stream.
    pub(super) channel: Arc<Mutex<Option<(String, Channel)>>>,
}

impl Edge {
    pub(super) fn http_base(&self) -> String {
        format!(
            "http://{}",
            self.http.borrow().trim_start_matches("http://")
        )
    }

    pub(super) async fn channel(&self) -> anyhow::Result<Channel> {
        let addr = self.grpc.borrow().clone();
        let mut cached = self.channel.lock().await;
        match &*cached {
            Some((a, ch)) if *a == addr => Ok(ch.clone()),
            _ => {
                let ch = Channel::from_shared(addr.clone())?
                    .connect_timeout(Duration::from_secs(2))
                    .connect_lazy();
                *cached = Some((addr, ch.clone()));
                Ok(ch)
            }
        }
    }
}

/// A client of the test: which edge it writes through and its messages.
pub(super) struct Client {
    pub(super) id: String,
    pub(super) token: String,
    pub(super) grpc: bool,
}

pub(super) fn body_of(client: usize, n: usize) -> (String, bool) {
    // Every fourth client sends one card number mid-conversation; first messages always pass,
    // so every ticket queues for a manager.
    if client.is_multiple_of(4) && n == 3 {
        (format!("client {client} message {n}: my card {CARD}"), true)
    } else {
        (format!("client {client} message {n}"), false)
    }
}

/// Sends one message until the edge accepts it, retrying with the same idempotency key through
/// crashes and outages; returns the message id. Every refusal is counted in `refusals`.
pub(super) async fn send_until_accepted(
    edge: &Edge,
    http: &reqwest::Client,
    c: &Client,
    body: &str,
    key: Uuid,
    refusals: &watch::Sender<Refusals>,
) -> anyhow::Result<String> {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if Instant::now() > deadline {
            bail!("{}: message {key} never accepted", c.id);
        }
        if c.grpc {
            let mut client = ClientServiceClient::new(edge.channel().await?);
            let mut req = authed(
                &c.token,
                v1::SendMessageRequest {
                    body: body.into(),
                    idempotency_key: key.to_string(),
                    ..Default::default()
                },
            );
            req.set_timeout(HUNG);
            match client.send_message(req).await {
                Ok(r) => return Ok(r.into_inner().message_id),
                Err(s) if s.code() == Code::Unavailable => {
                    refusals.send_modify(|r| r.grpc_unavailable += 1);
                }
                Err(s) if s.code() == Code::DeadlineExceeded => {
                    refusals.send_modify(|r| r.grpc_hung += 1);
                }
                // The gateway died mid-call.
                Err(s) if matches!(s.code(), Code::Unknown | Code::Internal | Code::Cancelled) => {}
                Err(s) => bail!("{}: SendMessage: {s}", c.id),
            }
        } else {
            let r = http
                .post(format!("{}/v1/messages", edge.http_base()))
                .bearer_auth(&c.token)
                .json(&serde_json::json!({"body": body, "client_message_id": key}))
                .timeout(HUNG)
                .send()
                .await;
            match r {
                Ok(resp) if resp.status().as_u16() == 202 => {
                    let v: Value = resp.json().await?;
                    return v["message_id"]
                        .as_str()
                        .map(str::to_owned)
                        .context("202 without message_id");
                }
                Ok(resp) if resp.status().as_u16() == 429 => {}
                Ok(resp) if resp.status().is_server_error() => {
                    let status = resp.status().as_u16();
                    let v: Value = resp.json().await.unwrap_or_default();
                    if status == 503 && v["error"]["code"] == "unavailable" {
                        refusals.send_modify(|r| r.http_unavailable += 1);
                    } else {
                        refusals.send_modify(|r| r.http_other_5xx += 1);
                    }
                }
                Ok(resp) => bail!("{}: {} {}", c.id, resp.status(), resp.text().await?),
                Err(e) if e.is_timeout() => refusals.send_modify(|r| r.http_hung += 1),
                // communication is down or died mid-request.
                Err(_) => {}
            }
        }
        tokio::time::sleep(RETRY).await;
    }
}
