//! The web-chat client API: send (`POST /v1/messages`), history (`GET /v1/messages`), read cursor
//! (`/v1/read`), the bot's commands (`/v1/commands`), the `/v1/ws` event stream and the OpenAPI document that describes them.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::ws::{CloseFrame, Message as WsMessage, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::Method;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, post};
use axum::{Json, Router};
use edge::auth::Verified;
use edge::client::{ClientChat, ClientError, Field};
use edge::stream::EndReason;
use serde::Deserialize;
use serde_json::json;
use tickets::Caller;
use tracing::Instrument as _;
use tracing::field::Empty;
use uuid::Uuid;

use crate::error::ApiError;

/// Largest request body the API reads; larger ones get 413 before any parsing (an upload: a
/// file of `attachments.max_bytes` and its form fields).
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;

/// Where a client uploads a file (multipart/form-data, one part named `file`).
pub const UPLOAD_PATH: &str = "/v1/attachments";

#[derive(Clone)]
pub struct AppState {
    /// The client core this API is a face of (the gRPC `ClientService` is the other).
    pub chat: ClientChat,
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
        (Method::POST, "/v1/typing", post(typing)),
        (Method::GET, "/v1/commands", get(commands)),
        (Method::POST, UPLOAD_PATH, post(upload)),
        (Method::GET, "/v1/attachments/{id}", get(download)),
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
    let upload_limit = usize::try_from(state.chat.files.limits.max_bytes)
        .unwrap_or(usize::MAX)
        .saturating_add(MAX_REQUEST_BYTES);
    for (_, path, handler) in routes() {
        let handler = if path == UPLOAD_PATH {
            handler.layer(axum::extract::DefaultBodyLimit::max(upload_limit))
        } else {
            handler
        };
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

/// The HTTP name of a request field.
fn field(f: Field) -> &'static str {
    match f {
        Field::Body => "body",
        Field::IdempotencyKey => "client_message_id",
        Field::PageSize => "limit",
        Field::PageToken => "before",
        Field::Cursor => "after",
        Field::Attachments => "attachments",
    }
}

impl From<ClientError> for ApiError {
    fn from(e: ClientError) -> Self {
        match e {
            ClientError::Auth(e) => e.into(),
            ClientError::RateLimited { retry_after_secs } => {
                Self::TooManyRequests { retry_after_secs }
            }
            ClientError::Invalid { field: f, message } => Self::InvalidField {
                field: field(f),
                message,
            },
            ClientError::KeyReused => Self::Conflict(format!(
                "{} was already used for a different message",
                field(Field::IdempotencyKey)
            )),
            ClientError::NoSuchMessage | ClientError::NoSuchAttachment => {
                Self::NotFound(e.to_string())
            }
            ClientError::File(e) => e.into(),
            // Retrying soon helps only once a stream closes: a fixed hint.
            ClientError::TooManyStreams(_) => Self::TooManyRequests {
                retry_after_secs: 10,
            },
            ClientError::Bus(e) => Self::Unavailable(format!("kafka: {e}")),
            ClientError::Store(e) => e.into(),
        }
    }
}

/// The verified client of the `Authorization` header, with the token's expiry.
async fn client_token(state: &AppState, headers: &HeaderMap) -> Result<Verified, ApiError> {
    let header = headers
        .get(header::AUTHORIZATION)
        .map(|v| {
            v.to_str()
                .map_err(|_| ApiError::Unauthenticated("malformed Authorization header".into()))
        })
        .transpose()?;
    Ok(state.chat.admit_header(header).await?)
}

async fn client_of(state: &AppState, headers: &HeaderMap) -> Result<Caller, ApiError> {
    Ok(client_token(state, headers).await?.caller)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostMessage {
    /// May be empty when `attachments` are given.
    #[serde(default)]
    pub body: String,
    pub client_message_id: Uuid,
    /// Ids of the client's uploads (`POST /v1/attachments`), in order.
    #[serde(default)]
    pub attachments: Vec<Uuid>,
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
    let sent = state
        .chat
        .send(&client, &req.body, req.client_message_id, &req.attachments)
        .await?;
    span.record("message_id", tracing::field::display(sent.message_id));
    if sent.published {
        crate::crash::after_publish("web");
    }
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "message_id": sent.message_id })),
    )
        .into_response())
}

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
    let page = state
        .chat
        .history(&client, q.before.as_deref(), q.limit)
        .await?;
    Ok(Json(json!({ "messages": page.messages, "next_before": page.next_before })).into_response())
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
    Ok(Json(state.chat.mark_read(&client, req.message_id).await?).into_response())
}

async fn read_state(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let client = client_of(&state, &headers).await?;
    Ok(Json(state.chat.read_state(&client).await?).into_response())
}

/// The bot commands the client may send (`/name args` as a message), in the spec's order.
async fn commands(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    client_of(&state, &headers).await?;
    Ok(Json(json!({ "commands": state.chat.commands() })).into_response())
}

/// "I am typing": the manager of the client's assigned ticket sees it (best effort, throttled).
async fn typing(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let client = client_of(&state, &headers).await?;
    state.chat.typing(&client).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// A file for the client's next message: multipart/form-data with one part `file` (its
/// filename and Content-Type are the file's). Answers 201 with the file's reference; its `id`
/// goes in the message's `attachments`.
async fn upload(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    form: Result<axum::extract::Multipart, axum::extract::multipart::MultipartRejection>,
) -> Result<Response, ApiError> {
    let client = client_of(&state, &headers).await?;
    let mut form = form.map_err(|e| ApiError::BadRequest {
        status: e.status(),
        message: e.body_text(),
    })?;
    let bad = |message: String| ApiError::InvalidField {
        field: "file",
        message,
    };
    let mut file = None;
    while let Some(part) = form.next_field().await.map_err(multipart_error)? {
        if part.name() != Some("file") {
            continue;
        }
        if file.is_some() {
            return Err(bad("one file per upload".into()));
        }
        let name = part.file_name().unwrap_or("file").to_owned();
        let content_type = part.content_type().unwrap_or("").to_owned();
        let data = part.bytes().await.map_err(multipart_error)?;
        file = Some(edge::files::Upload {
            name,
            content_type,
            data,
        });
    }
    let file = file.ok_or_else(|| bad("a multipart part named `file` is required".into()))?;
    let stored = state.chat.upload(&client, file).await?;
    Ok((StatusCode::CREATED, Json(stored)).into_response())
}

/// A multipart body that breaks off or is larger than allowed.
fn multipart_error(e: axum::extract::multipart::MultipartError) -> ApiError {
    ApiError::BadRequest {
        status: e.status(),
        message: e.body_text(),
    }
}

/// A file of the client's chat (or their own upload). Served as a download (inline only for
/// images), never interpreted by the browser as a page of this origin.
async fn download(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Result<Response, ApiError> {
    let client = client_of(&state, &headers).await?;
    let id = Uuid::parse_str(&id).map_err(|_| ApiError::NotFound("no such file".into()))?;
    let (file, data) = state.chat.download(&client, id).await?;
    Ok(edge::files::download_response(&file, data))
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
        Some(t) => state.chat.admit_token(t).await?,
        None => client_token(&state, &headers).await?,
    };
    let events = state.chat.events(&token, q.after)?;
    let stall = state.chat.streams.config.max_stall;
    let store = state.chat.store.clone();
    // The client only reads on this socket (it writes over HTTP): a frame is at most a close or
    // a ping, so anything bigger is refused (tungstenite's default would buffer 64 MiB).
    let upgrade = upgrade
        .max_frame_size(MAX_WS_FRAME_BYTES)
        .max_message_size(MAX_WS_FRAME_BYTES);
    Ok(upgrade.on_upgrade(move |socket| {
        state
            .sockets
            .track_future(push_events(store, token.caller, events, stall, socket))
    }))
}

/// Largest frame or message a client may send on its WebSocket.
pub const MAX_WS_FRAME_BYTES: usize = 4096;

/// WebSocket close code when the token expires: the client reconnects with a fresh token and
/// `after=<last event_id>` (4000-4999 are the application's own codes).
pub const CLOSE_TOKEN_EXPIRED: u16 = 4001;
/// WebSocket close code when the server shuts down (RFC 6455 "going away"): reconnect, to
/// another replica, with `after=<last event_id>`.
pub const CLOSE_GOING_AWAY: u16 = 1001;

/// WebSocket close code when the client reads too slowly (it left `max_stall` of events unread):
/// reconnect with `after=<last event_id>`.
pub const CLOSE_TOO_SLOW: u16 = 4002;
/// WebSocket close code when the store fails (RFC 6455 "internal error"): reconnect later.
pub const CLOSE_INTERNAL: u16 = 1011;

/// Events pushed between two looks at the trace contexts (one query per batch, export on).
const PUSH_BATCH: usize = 64;

/// Pushes the client's stream (`edge::stream`: resume, live events, slow-reader cut-off) as JSON
/// text frames until it ends, then says why in a close frame; a client that closes ends it.
async fn push_events(
    store: tickets::PgStore,
    client: Caller,
    mut events: edge::stream::Events,
    stall: Duration,
    mut socket: WebSocket,
) {
    let _live = platform::ops::GaugeGuard::hold(metrics::gauge!("inbox_live_websockets"));
    let mut batch = Vec::with_capacity(PUSH_BATCH);
    let end = loop {
        batch.clear();
        tokio::select! {
            n = events.recv_many(&mut batch, PUSH_BATCH) => if n == 0 { return },
            incoming = socket.recv() => match incoming {
                Some(Ok(WsMessage::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => continue,
            },
        }
        let seqs = batch
            .iter()
            .filter_map(|e| e.as_ref().ok())
            .map(|e| e.seq)
            .collect();
        let traces = crate::events::trace_parents(&store, seqs).await;
        let mut ended = None;
        for item in batch.drain(..) {
            let e = match item {
                Ok(e) => e,
                Err(end) => {
                    ended = Some(end);
                    break;
                }
            };
            let span = match traces.get(&e.seq) {
                Some(parent) => push_span(&client, &e, parent),
                None => tracing::Span::none(),
            };
            let frame = frame(e);
            // A client that does not read gets no more than `stall` of the server's patience.
            match tokio::time::timeout(stall, socket.send(frame).instrument(span)).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return,
                Err(_) => {
                    tracing::info!(client_id = %client.user_id, "slow WebSocket reader dropped");
                    return;
                }
            }
        }
        if let Some(end) = ended {
            break end;
        }
    };
    let (code, reason) = match end.reason {
        EndReason::TokenExpired => (
            CLOSE_TOKEN_EXPIRED,
            "token expired: reconnect with a fresh token and after=<last event_id>",
        ),
        EndReason::ShuttingDown => (
            CLOSE_GOING_AWAY,
            "server shutting down: reconnect with after=<last event_id>",
        ),
        EndReason::TooSlow => (
            CLOSE_TOO_SLOW,
            "too far behind: reconnect with after=<last event_id>",
        ),
        EndReason::Store(e) => {
            tracing::warn!(error = %e, client_id = %client.user_id, "cannot read events");
            (CLOSE_INTERNAL, "events unavailable: reconnect later")
        }
    };
    let close = WsMessage::Close(Some(CloseFrame {
        code,
        reason: reason.into(),
    }));
    let _ = tokio::time::timeout(stall, socket.send(close)).await;
}

/// An event as the web chat's frame: `type`, `event_id`, `created_at` and the payload's fields.
fn frame(e: tickets::Event) -> WsMessage {
    let mut frame = json!({ "type": e.kind, "event_id": e.seq, "created_at": e.created_at });
    if let (Some(obj), serde_json::Value::Object(payload)) = (frame.as_object_mut(), e.payload) {
        for (k, v) in payload {
            obj.entry(k).or_insert(v);
        }
    }
    WsMessage::Text(frame.to_string().into())
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
