//! The streams of the load: each client's WebSocket and gRPC stream and each manager's,
//! followed across every reconnect from the last cursor, and what they delivered.

use super::*;

/// One delivered event: its cursor, kind and payload.
#[derive(Debug, Clone)]
pub(super) struct Seen {
    pub(super) cursor: i64,
    pub(super) kind: String,
    pub(super) ticket_id: String,
    pub(super) message_id: String,
}

/// What a stream delivered, across all its reconnects.
#[derive(Debug, Default)]
pub(super) struct Delivered {
    pub(super) events: Vec<Seen>,
    pub(super) reconnects: usize,
}

impl Delivered {
    /// Takes the next event; a cursor that does not grow is a duplicate or a reordering.
    pub(super) fn take(&mut self, e: Seen, progress: &watch::Sender<i64>) -> anyhow::Result<()> {
        let last = self.events.last().map_or(0, |e| e.cursor);
        if e.cursor <= last {
            bail!("cursor {} delivered after {last}", e.cursor);
        }
        progress.send_replace(e.cursor);
        self.events.push(e);
        Ok(())
    }

    pub(super) fn last(&self) -> i64 {
        self.events.last().map_or(0, |e| e.cursor)
    }
}

/// Follows a client's WebSocket, reconnecting with `after=<last event_id>` whenever it drops.
pub(super) async fn follow_ws(
    edge: Edge,
    token: String,
    progress: watch::Sender<i64>,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<Delivered> {
    let mut out = Delivered::default();
    loop {
        if *stop.borrow() {
            return Ok(out);
        }
        let url = format!(
            "ws://{}/v1/ws?token={token}&after={}",
            edge.http.borrow().trim_start_matches("http://"),
            out.last()
        );
        let ws = match tokio_tungstenite::connect_async(url).await {
            Ok((ws, _)) => ws,
            Err(_) => {
                tokio::select! {
                    _ = stop.changed() => {}
                    _ = tokio::time::sleep(RETRY) => {}
                }
                continue;
            }
        };
        out.reconnects += 1;
        let (_, mut rx) = ws.split();
        loop {
            let frame = tokio::select! {
                _ = stop.changed() => return Ok(out),
                f = rx.next() => f,
            };
            let text = match frame {
                Some(Ok(WsMessage::Text(t))) => t,
                Some(Ok(WsMessage::Close(_))) | Some(Err(_)) | None => break,
                Some(Ok(_)) => continue,
            };
            let v: Value = serde_json::from_str(&text)?;
            let s = |k: &str| v[k].as_str().unwrap_or_default().to_owned();
            out.take(
                Seen {
                    cursor: v["event_id"].as_i64().context("frame without event_id")?,
                    kind: s("type"),
                    ticket_id: s("ticket_id"),
                    message_id: s("message_id"),
                },
                &progress,
            )?;
        }
    }
}

fn payload_str(e: &v1::Event, key: &str) -> String {
    match e
        .payload
        .as_ref()
        .and_then(|p| p.fields.get(key))
        .and_then(|v| v.kind.as_ref())
    {
        Some(prost_types::value::Kind::StringValue(s)) => s.clone(),
        _ => String::new(),
    }
}

/// Follows a gRPC `StreamEvents` (client or manager), resuming from the last cursor on any error.
pub(super) async fn follow_grpc(
    edge: Edge,
    token: String,
    manager: bool,
    progress: watch::Sender<i64>,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<Delivered> {
    let mut out = Delivered::default();
    loop {
        if *stop.borrow() {
            return Ok(out);
        }
        let ch = edge.channel().await?;
        let req = authed(
            &token,
            v1::StreamEventsRequest {
                after_cursor: out.last(),
            },
        );
        let opened = if manager {
            ManagerServiceClient::new(ch).stream_events(req).await
        } else {
            ClientServiceClient::new(ch).stream_events(req).await
        };
        let mut stream = match opened {
            Ok(s) => s.into_inner(),
            Err(_) => {
                tokio::select! {
                    _ = stop.changed() => {}
                    _ = tokio::time::sleep(RETRY) => {}
                }
                continue;
            }
        };
        out.reconnects += 1;
        loop {
            let item = tokio::select! {
                _ = stop.changed() => return Ok(out),
                i = stream.next() => i,
            };
            match item {
                Some(Ok(e)) => {
                    let seen = Seen {
                        cursor: e.cursor,
                        kind: e.kind.clone(),
                        ticket_id: e.ticket_id.clone(),
                        message_id: payload_str(&e, "message_id"),
                    };
                    out.take(seen, &progress)?;
                }
                Some(Err(_)) | None => break,
            }
        }
    }
}
