//! The web-chat client API: send (`POST /v1/messages`), history (`GET /v1/messages`), read cursor
//! (`/v1/read`), the `/v1/ws` event stream and the OpenAPI document that describes them.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::ws::{Message as WsMessage, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::Method;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, post};
use axum::{Json, Router};
use edge::auth::Verified;
use serde::Deserialize;
use serde_json::json;
use tickets::{Caller, ChatCursor, MessageBody, PgStore, Role, message_id_for, web_external_id};
use tokio::sync::broadcast::error::RecvError;
use tracing::Instrument as _;
use tracing::field::Empty;
use uuid::Uuid;

use crate::error::ApiError;
use crate::events::Wakeups;
use crate::publisher::Publisher;
use crate::ratelimit::RateLimiter;

/// Largest request body the API reads; larger ones get 413 before any parsing.
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;

#[derive(Clone)]
pub struct AppState {
    pub store: PgStore,
    pub publisher: Publisher,
    pub verifier: edge::auth::Verifier,
    pub wakeups: Wakeups,
    pub limiter: RateLimiter,
    /// Cancelled when the service shuts down: WebSockets are closed, telling clients to resume.
    pub shutdown: tokio_util::sync::CancellationToken,
    /// The live WebSocket tasks: an upgraded connection is no longer the HTTP server's, so the
    /// service waits for these to send their close frames before it exits.
    pub sockets: tokio_util::task::TaskTracker,
}

/// Every route of the client API. The router is built from this table only, and a test checks the
/// OpenAPI document (`openapi.rs`) against it, so the two cannot drift apart.
pub fn routes() -> Vec<(Method, &'static str, MethodRouter<Arc<AppState>>)> {
    vec![
        (Method::POST, "/v1/messages", post(post_message)),
        (Method::GET, "/v1/messages", get(history)),
        (Method::POST, "/v1/read", post(mark_read)),
        (Method::GET, "/v1/read", get(read_state)),
        (Method::GET, "/v1/ws", get(websocket)),
        (
            Method::GET,
            "/v1/openapi.json",
            get(|| async { Json(crate::openapi::document()) }),
        ),
        (Method::GET, "/healthz", get(|| async { "ok" })),
    ]
}

pub fn router(state: AppState) -> Router {
    let mut by_path: Vec<(&'static str, MethodRouter<Arc<AppState>>)> = Vec::new();
    for (_, path, handler) in routes() {
        match by_path.iter_mut().find(|(p, _)| *p == path) {
            Some((_, existing)) => *existing = std::mem::take(existing).merge(handler),
            None => by_path.push((path, handler)),
        }
    }
    by_path
        .into_iter()
        .fold(Router::new(), |r, (path, handler)| r.route(path, handler))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_REQUEST_BYTES))
        .with_state(Arc::new(state))
}

async fn client_of(state: &AppState, headers: &HeaderMap) -> Result<Caller, ApiError> {
    Ok(client_token(state, headers).await?.caller)
}

/// The verified client of the `Authorization` header, with the token's expiry. With a JWKS this
/// may fetch the identity provider's keys (a token of a key not seen yet).
async fn client_token(state: &AppState, headers: &HeaderMap) -> Result<Verified, ApiError> {
    let header = headers
        .get(header::AUTHORIZATION)
        .map(|v| {
            v.to_str()
                .map_err(|_| ApiError::Unauthenticated("malformed Authorization header".into()))
        })
        .transpose()?;
    let token = state.verifier.verify_header_token_async(header).await?;
    checked_client(state, token)
}

fn checked_client(state: &AppState, token: Verified) -> Result<Verified, ApiError> {
    edge::auth::require(&token.caller, Role::Client)?;
    rate_limit(state, &token.caller)?;
    Ok(token)
}

fn rate_limit(state: &AppState, caller: &Caller) -> Result<(), ApiError> {
    state
        .limiter
        .check(&caller.user_id)
        .map_err(|wait| ApiError::TooManyRequests {
            retry_after_secs: wait.as_secs_f64().ceil().max(1.0) as u64,
        })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostMessage {
    pub body: String,
    pub client_message_id: Uuid,
}

/// The root of a client message's trace (a client's own `traceparent` is not trusted: anyone could
/// pick trace ids or force sampling); the Kafka record carries it on.
#[tracing::instrument(skip_all, fields(client_id = Empty, message_id = Empty))]
async fn post_message(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    payload: Result<Json<PostMessage>, JsonRejection>,
) -> Result<Response, ApiError> {
    let client = client_of(&state, &headers).await?;
    let span = tracing::Span::current();
    span.record("client_id", client.user_id.as_str());
    let Json(req) = payload?;
    let body = MessageBody::parse(req.body).map_err(|e| ApiError::InvalidField {
        field: "body",
        message: e.to_string(),
    })?;
    let external_id = web_external_id(&client.user_id, req.client_message_id);
    let message_id = message_id_for("web", &external_id);
    span.record("message_id", tracing::field::display(message_id));
    // A retry of a message already stored is answered from the store and not published again.
    if let Some(stored) = state.store.client_message_body(message_id).await? {
        if stored != body.as_str() {
            return Err(ApiError::Conflict(
                "client_message_id was already used for a different message".into(),
            ));
        }
        return Ok(accepted(message_id));
    }
    let msg = proto::v1::InboundMessage {
        message_id: message_id.to_string(),
        client_id: client.user_id.clone(),
        channel: "web".into(),
        external_id,
        body: body.into_inner(),
        client_name: client.display_name.clone(),
        received_at_unix_ms: chrono::Utc::now().timestamp_millis(),
    };
    state
        .publisher
        .publish(&msg)
        .await
        .map_err(|e| ApiError::Unavailable(format!("kafka: {e}")))?;
    tracing::info!("client message accepted");
    crate::crash::after_publish("web");
    Ok(accepted(message_id))
}

fn accepted(message_id: Uuid) -> Response {
    (
        StatusCode::ACCEPTED,
        Json(json!({ "message_id": message_id })),
    )
        .into_response()
}

/// Largest history page a client may ask for.
pub const MAX_PAGE: i64 = 200;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryQuery {
    /// Cursor from a previous page's `next_before`: return messages older than it.
    before: Option<String>,
    limit: Option<i64>,
}

/// One page of the client's chat (all of their tickets), oldest first; `next_before` pages back.
async fn history(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    query: Result<Query<HistoryQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let client = client_of(&state, &headers).await?;
    let Query(q) = query.map_err(|e| ApiError::BadRequest {
        status: e.status(),
        message: e.body_text(),
    })?;
    let limit = q.limit.unwrap_or(50);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::InvalidField {
            field: "limit",
            message: format!("must be between 1 and {MAX_PAGE}"),
        });
    }
    let before = q
        .before
        .as_deref()
        .map(ChatCursor::decode)
        .transpose()
        .map_err(|e| ApiError::InvalidField {
            field: "before",
            message: e.to_string(),
        })?;
    let page = state
        .store
        .client_history(&client.user_id, before, limit)
        .await?;
    let next_before = page
        .has_more
        .then(|| page.messages.first().map(|m| m.cursor().encode()))
        .flatten();
    Ok(Json(json!({ "messages": page.messages, "next_before": next_before })).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MarkRead {
    /// The last message the client has read; everything up to it counts as read.
    pub message_id: Uuid,
}

async fn mark_read(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    payload: Result<Json<MarkRead>, JsonRejection>,
) -> Result<Response, ApiError> {
    let client = client_of(&state, &headers).await?;
    let Json(req) = payload?;
    let read = state
        .store
        .mark_read(&client.user_id, req.message_id)
        .await?
        .ok_or_else(|| ApiError::NotFound("no such message in your chat".into()))?;
    Ok(Json(read).into_response())
}

async fn read_state(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let client = client_of(&state, &headers).await?;
    Ok(Json(state.store.read_state(&client.user_id).await?).into_response())
}

#[derive(Debug, Deserialize)]
pub struct WsQuery {
    token: Option<String>,
    /// Resume after this event id (the last one the client saw).
    #[serde(default)]
    after: i64,
}

async fn websocket(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(q): Query<WsQuery>,
    upgrade: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    // Browsers cannot set headers on a WebSocket: the token may come as `?token=`.
    let token = match &q.token {
        Some(t) => checked_client(&state, state.verifier.verify_token_async(t).await?)?,
        None => client_token(&state, &headers).await?,
    };
    let sockets = state.sockets.clone();
    Ok(upgrade.on_upgrade(move |socket| {
        sockets.track_future(stream_events(state, token, q.after, socket))
    }))
}

/// WebSocket close code when the token expires: the client reconnects with a fresh token and
/// `after=<last event_id>` (4000-4999 are the application's own codes).
pub const CLOSE_TOKEN_EXPIRED: u16 = 4001;
/// WebSocket close code when the server shuts down (RFC 6455 "going away"): reconnect, to
/// another replica, with `after=<last event_id>`.
pub const CLOSE_GOING_AWAY: u16 = 1001;

/// Sends the client every event after `cursor`, then each new one as it commits, until the
/// socket closes or the token expires.
async fn stream_events(state: Arc<AppState>, token: Verified, cursor: i64, mut socket: WebSocket) {
    let _live = platform::ops::GaugeGuard::hold(metrics::gauge!("inbox_live_websockets"));
    let close = tokio::select! {
        () = send_events(&state, &token.caller, cursor, &mut socket) => None,
        () = tokio::time::sleep(token.remaining()) => Some((
            CLOSE_TOKEN_EXPIRED,
            "token expired: reconnect with a fresh token and after=<last event_id>",
        )),
        () = state.shutdown.cancelled() => Some((
            CLOSE_GOING_AWAY,
            "server shutting down: reconnect with after=<last event_id>",
        )),
    };
    if let Some((code, reason)) = close {
        let _ = socket
            .send(WsMessage::Close(Some(axum::extract::ws::CloseFrame {
                code,
                reason: reason.into(),
            })))
            .await;
    }
}

async fn send_events(state: &AppState, client: &Caller, mut cursor: i64, socket: &mut WebSocket) {
    let mut wakeups = state.wakeups.subscribe();
    loop {
        let events = match state
            .store
            .client_events_after(&client.user_id, cursor, 200)
            .await
        {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(error = %e, client_id = %client.user_id, "cannot read events");
                let _ = socket.send(WsMessage::Close(None)).await;
                return;
            }
        };
        let full_page = events.len() == 200;
        let traces =
            crate::events::trace_parents(&state.store, events.iter().map(|e| e.seq).collect())
                .await;
        for e in events {
            cursor = e.seq;
            let span = match traces.get(&e.seq) {
                Some(parent) => push_span(client, &e, parent),
                None => tracing::Span::none(),
            };
            let mut frame =
                json!({ "type": e.kind, "event_id": e.seq, "created_at": e.created_at });
            if let (Some(obj), serde_json::Value::Object(payload)) =
                (frame.as_object_mut(), e.payload)
            {
                for (k, v) in payload {
                    obj.entry(k).or_insert(v);
                }
            }
            if socket
                .send(WsMessage::Text(frame.to_string().into()))
                .instrument(span)
                .await
                .is_err()
            {
                return;
            }
        }
        if full_page {
            continue;
        }
        // Wait for news for this client; the periodic re-read covers a wake-up lost in transit.
        let deadline = tokio::time::sleep(Duration::from_secs(5));
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                w = wakeups.recv() => match w {
                    Ok(id) if *id == *client.user_id => break,
                    Ok(_) => {}
                    Err(RecvError::Lagged(_)) => break,
                    Err(RecvError::Closed) => return,
                },
                incoming = socket.recv() => match incoming {
                    Some(Ok(WsMessage::Close(_))) | None | Some(Err(_)) => return,
                    Some(Ok(_)) => {}
                },
                _ = &mut deadline => break,
            }
        }
    }
}

fn push_span(client: &Caller, e: &tickets::Event, parent: &str) -> tracing::Span {
    let span = tracing::info_span!(
        "websocket_push",
        kind = %e.kind,
        event_id = e.seq,
        client_id = %client.user_id,
        ticket_id = Empty,
        manager_id = Empty,
    );
    platform::telemetry::set_parent(&span, parent);
    if let Some(t) = e.ticket_id {
        span.record("ticket_id", tracing::field::display(t));
    }
    if let Some(m) = &e.manager_id {
        span.record("manager_id", m.as_str());
    }
    span
}
