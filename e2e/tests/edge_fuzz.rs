//! Bad input at the client and manager edges: random HTTP bodies (bytes, JSON of any shape, any
//! content type) against the web chat API and random request fields against gRPC. Every answer is
//! an accepted message or a client error (HTTP 4xx, gRPC `INVALID_ARGUMENT` and kin), never a
//! server error, and afterwards the engine still takes, stores and checks an ordinary message from
//! the same client: nothing bad got stuck in its Kafka partition.
//!
//! `make test` runs a few hundred cases (seconds); a longer hunt:
//! `PROPTEST_CASES=5000 cargo nextest run -p e2e --test edge_fuzz`.

use std::time::Duration;

use anyhow::{Context, bail};
use e2e::{Engine, Stack};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use proto::v1::{
    self, client_service_client::ClientServiceClient, manager_service_client::ManagerServiceClient,
};
use serde_json::Value;
use sqlx::Connection;
use tickets::Role;
use tonic::Code;
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;
use uuid::Uuid;

fn config() -> Config {
    Config {
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(150),
        failure_persistence: None,
        ..Config::default()
    }
}

fn authed<T>(token: &str, msg: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    if let Ok(v) = MetadataValue::try_from(format!("Bearer {token}")) {
        r.metadata_mut().insert("authorization", v);
    }
    r
}

/// Text with the characters that break things: NUL and other controls, quotes, astral planes.
fn nasty_text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[\\x00-\\x1f \"\\\\a-z\u{200b}\u{1F600}]{0,40}",
        Just(String::new()),
        Just(" \n\t ".to_owned()),
        Just("x".repeat(5000)),
        Just("я".repeat(4001)),
        Just("\0".to_owned()),
        Just("hello\0world".to_owned()),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        nasty_text().prop_map(Value::String),
        Just(Value::String(Uuid::new_v4().to_string())),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    Just("body".to_owned()),
                    Just("client_message_id".to_owned()),
                    Just("message_id".to_owned()),
                    "[a-z_]{1,8}",
                ],
                inner,
                0..4
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A message-shaped object whose fields have any value.
fn message_like() -> impl Strategy<Value = Value> {
    (
        prop::option::of(json_value()),
        prop::option::of(prop_oneof![
            json_value(),
            Just(Value::String(Uuid::new_v4().to_string()))
        ]),
    )
        .prop_map(|(body, key)| {
            let mut o = serde_json::Map::new();
            if let Some(b) = body {
                o.insert("body".into(), b);
            }
            if let Some(k) = key {
                o.insert("client_message_id".into(), k);
            }
            Value::Object(o)
        })
}

#[derive(Debug, Clone)]
enum HttpBody {
    Json(Value),
    Bytes(Vec<u8>),
}

fn http_case() -> impl Strategy<Value = (&'static str, Option<&'static str>, HttpBody)> {
    (
        prop_oneof![Just("/v1/messages"), Just("/v1/read")],
        prop_oneof![
            Just(Some("application/json")),
            Just(Some("text/plain")),
            Just(None)
        ],
        prop_oneof![
            message_like().prop_map(HttpBody::Json),
            json_value().prop_map(HttpBody::Json),
            prop::collection::vec(any::<u8>(), 0..200).prop_map(HttpBody::Bytes),
        ],
    )
}

#[derive(Debug, Clone)]
enum GrpcCase {
    Send {
        body: String,
        key: String,
    },
    GetTicket {
        ticket_id: String,
    },
    ListMessages {
        ticket_id: String,
        page_size: i32,
        page_token: String,
    },
    ListTickets {
        statuses: Vec<i32>,
        page_size: i32,
        page_token: String,
    },
    History {
        page_size: i32,
        page_token: String,
    },
    MarkRead {
        message_id: String,
    },
    Reply {
        ticket_id: String,
        body: String,
        key: String,
    },
}

fn id_text() -> impl Strategy<Value = String> {
    prop_oneof![
        nasty_text(),
        Just(Uuid::new_v4().to_string()),
        Just(Uuid::nil().to_string())
    ]
}

fn grpc_case() -> impl Strategy<Value = GrpcCase> {
    prop_oneof![
        (nasty_text(), id_text()).prop_map(|(body, key)| GrpcCase::Send { body, key }),
        id_text().prop_map(|ticket_id| GrpcCase::GetTicket { ticket_id }),
        (id_text(), any::<i32>(), nasty_text()).prop_map(|(ticket_id, page_size, page_token)| {
            GrpcCase::ListMessages {
                ticket_id,
                page_size,
                page_token,
            }
        }),
        (
            prop::collection::vec(any::<i32>(), 0..4),
            any::<i32>(),
            nasty_text()
        )
            .prop_map(|(statuses, page_size, page_token)| GrpcCase::ListTickets {
                statuses,
                page_size,
                page_token
            }),
        (any::<i32>(), nasty_text()).prop_map(|(page_size, page_token)| GrpcCase::History {
            page_size,
            page_token
        }),
        id_text().prop_map(|message_id| GrpcCase::MarkRead { message_id }),
        (id_text(), nasty_text(), nasty_text()).prop_map(|(ticket_id, body, key)| {
            GrpcCase::Reply {
                ticket_id,
                body,
                key,
            }
        }),
    ]
}

/// A gRPC answer that is not a server-side failure.
fn client_side(r: Result<(), tonic::Status>) -> Result<(), TestCaseError> {
    match r {
        Ok(()) => Ok(()),
        Err(s)
            if matches!(
                s.code(),
                Code::InvalidArgument
                    | Code::NotFound
                    | Code::AlreadyExists
                    | Code::FailedPrecondition
                    | Code::OutOfRange
            ) =>
        {
            Ok(())
        }
        Err(s) => Err(TestCaseError::fail(format!("server-side failure: {s:?}"))),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_bodies_and_fields_at_the_edges_get_client_errors_and_break_nothing()
-> anyhow::Result<()> {
    let stack = Stack::from_env().await?;
    // No rate limit: every case must reach validation, not the limiter.
    let engine = Engine::start_with(&stack, &[("INBOX_RATE_LIMIT_PER_SECOND", "0".into())]).await?;
    let client_id = format!("fuzz-{}", Uuid::new_v4().simple());
    let client = stack.token(Role::Client, &client_id, "Fuzz Client")?;
    let manager = stack.token(
        Role::Manager,
        &format!("fuzz-m-{}", Uuid::new_v4().simple()),
        "M",
    )?;
    let base = format!("http://{}", engine.http.trim_start_matches("http://"));
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    let channel = Channel::from_shared(engine.grpc.clone())?.connect().await?;
    let rt = tokio::runtime::Handle::current();

    tokio::task::block_in_place(|| -> anyhow::Result<()> {
        let mut runner = TestRunner::new(config());
        runner
            .run(&http_case(), |(path, content_type, body)| {
                rt.block_on(async {
                    let mut req = http.post(format!("{base}{path}")).bearer_auth(&client);
                    if let Some(ct) = content_type {
                        req = req.header("content-type", ct);
                    }
                    let req = match &body {
                        HttpBody::Json(v) => req.body(v.to_string()),
                        HttpBody::Bytes(b) => req.body(b.clone()),
                    };
                    let resp = req
                        .send()
                        .await
                        .map_err(|e| TestCaseError::fail(format!("request failed: {e}")))?;
                    let status = resp.status();
                    let text = resp.text().await.unwrap_or_default();
                    prop_assert!(
                        status.is_success() || status.is_client_error(),
                        "{path} answered {status}: {text}"
                    );
                    if status.is_client_error() {
                        let v: Value = serde_json::from_str(&text).map_err(|e| {
                            TestCaseError::fail(format!(
                                "{status} without a JSON error ({e}): {text}"
                            ))
                        })?;
                        prop_assert!(v["error"]["code"].is_string(), "{status}: {text}");
                    }
                    Ok(())
                })
            })
            .map_err(|e| anyhow::anyhow!("HTTP: {e}"))?;

        let mut runner = TestRunner::new(config());
        runner
            .run(&grpc_case(), |case| {
                rt.block_on(async {
                    let mut clients = ClientServiceClient::new(channel.clone());
                    let mut managers = ManagerServiceClient::new(channel.clone());
                    let r = match case {
                        GrpcCase::Send { body, key } => clients
                            .send_message(authed(
                                &client,
                                v1::SendMessageRequest {
                                    body,
                                    idempotency_key: key,
                                    ..Default::default()
                                },
                            ))
                            .await
                            .map(|_| ()),
                        GrpcCase::GetTicket { ticket_id } => managers
                            .get_ticket(authed(&manager, v1::GetTicketRequest { ticket_id }))
                            .await
                            .map(|_| ()),
                        GrpcCase::ListMessages {
                            ticket_id,
                            page_size,
                            page_token,
                        } => managers
                            .list_messages(authed(
                                &manager,
                                v1::ListMessagesRequest {
                                    ticket_id,
                                    page_size,
                                    page_token,
                                    ..Default::default()
                                },
                            ))
                            .await
                            .map(|_| ()),
                        GrpcCase::ListTickets {
                            statuses,
                            page_size,
                            page_token,
                        } => managers
                            .list_tickets(authed(
                                &manager,
                                v1::ListTicketsRequest {
                                    statuses,
                                    page_size,
                                    page_token,
                                },
                            ))
                            .await
                            .map(|_| ()),
                        GrpcCase::History {
                            page_size,
                            page_token,
                        } => clients
                            .list_history(authed(
                                &client,
                                v1::ListHistoryRequest {
                                    page_size,
                                    page_token,
                                },
                            ))
                            .await
                            .map(|_| ()),
                        GrpcCase::MarkRead { message_id } => clients
                            .mark_read(authed(&client, v1::MarkReadRequest { message_id }))
                            .await
                            .map(|_| ()),
                        GrpcCase::Reply {
                            ticket_id,
                            body,
                            key,
                        } => managers
                            .send_reply(authed(
                                &manager,
                                v1::SendReplyRequest {
                                    ticket_id,
                                    body,
                                    idempotency_key: key,
                                    ..Default::default()
                                },
                            ))
                            .await
                            .map(|_| ()),
                    };
                    client_side(r)
                })
            })
            .map_err(|e| anyhow::anyhow!("gRPC: {e}"))?;
        Ok(())
    })?;

    // The engine still works for the same client: an ordinary message is stored and checked.
    let key = Uuid::new_v4();
    let resp = http
        .post(format!("{base}/v1/messages"))
        .bearer_auth(&client)
        .json(&serde_json::json!({"body": "an ordinary question", "client_message_id": key}))
        .send()
        .await?;
    if resp.status().as_u16() != 202 {
        bail!(
            "ordinary message refused: {} {}",
            resp.status(),
            resp.text().await?
        );
    }
    let id: Uuid = resp.json::<Value>().await?["message_id"]
        .as_str()
        .context("no message_id")?
        .parse()?;
    let mut db = sqlx::PgConnection::connect(&engine.database_url).await?;
    let mut listener = sqlx::postgres::PgListener::connect(&engine.database_url).await?;
    listener.listen(tickets::store::EVENTS_CHANNEL).await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let status: Option<String> =
            sqlx::query_scalar("SELECT afc_status FROM messages WHERE id = $1")
                .bind(id)
                .fetch_optional(&mut db)
                .await?;
        if status.as_deref() == Some("passed") {
            break;
        }
        if tokio::time::Instant::now() >= deadline {
            bail!(
                "the ordinary message was not checked in time (status {status:?}): a bad message is stuck"
            );
        }
        // A passed message on an unassigned ticket writes no event (no notification): re-check
        // every second as well.
        let _ = tokio::time::timeout(Duration::from_secs(1), listener.recv()).await;
    }
    Ok(())
}

/// Oversized input is refused at the edge, before it is buffered: a gRPC request over the API's
/// limit gets `OUT_OF_RANGE`, a WebSocket frame over the socket's limit closes the socket (1009,
/// "message too big"), and both edges go on serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_grpc_requests_and_websocket_frames_are_refused_unbuffered() -> anyhow::Result<()>
{
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message as WsMessage;

    let stack = Stack::from_env().await?;
    let engine = Engine::start(&stack).await?;
    let client = stack.token(
        Role::Client,
        &format!("big-{}", Uuid::new_v4().simple()),
        "Big",
    )?;
    let channel = Channel::from_shared(engine.grpc.clone())?.connect().await?;
    let mut clients = ClientServiceClient::new(channel);
    // The client service takes uploads: its limit is the largest file and 64 KiB more.
    let limit =
        usize::try_from(edge::files::Limits::default().max_bytes)? + gateway::MAX_REQUEST_BYTES;
    let big = "x".repeat(limit + 1);
    let refused = clients
        .send_message(authed(
            &client,
            v1::SendMessageRequest {
                body: big,
                idempotency_key: Uuid::new_v4().to_string(),
                ..Default::default()
            },
        ))
        .await
        .err()
        .context("an oversized request was accepted")?;
    assert_eq!(refused.code(), Code::OutOfRange, "{refused:?}");
    // The connection still serves.
    clients
        .list_history(authed(
            &client,
            v1::ListHistoryRequest {
                page_size: 10,
                page_token: String::new(),
            },
        ))
        .await?;

    let mut ws = e2e::webchat::connect(&engine, &client).await?;
    let frame = vec![b'x'; communication::http::MAX_WS_FRAME_BYTES * 4];
    ws.send(WsMessage::Binary(frame.into())).await?;
    let ended = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(m) = ws.next().await {
            match m {
                Ok(WsMessage::Close(frame)) => return frame.map(|f| u16::from(f.code)),
                Ok(_) => continue,
                Err(_) => return None,
            }
        }
        None
    })
    .await
    .context("the socket stayed open after an oversized frame")?;
    assert!(
        ended.is_none_or(|code| code == 1009),
        "closed with {ended:?}"
    );
    // A new socket is served.
    let mut again = e2e::webchat::connect(&engine, &client).await?;
    again.send(WsMessage::Ping(vec![1].into())).await?;
    Ok(())
}

/// A client that trickles its request head (slowloris) or holds a kept-alive connection silent
/// is cut off after `INBOX_HTTP_HEADER_TIMEOUT_SECS`, and the server goes on serving others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_head_that_never_ends_and_an_idle_connection_are_closed() -> anyhow::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let stack = Stack::from_env().await?;
    let engine =
        Engine::start_with(&stack, &[("INBOX_HTTP_HEADER_TIMEOUT_SECS", "1".into())]).await?;
    let addr = engine.http.trim_start_matches("http://").to_owned();
    // Reads until the server closes; fails if it keeps the connection open for `within`.
    async fn closed_within(
        tcp: &mut tokio::net::TcpStream,
        within: Duration,
    ) -> anyhow::Result<Vec<u8>> {
        let mut got = Vec::new();
        tokio::time::timeout(within, async {
            let mut buf = [0u8; 1024];
            loop {
                match tcp.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                }
            }
        })
        .await
        .context("the server kept the connection open")?;
        Ok(got)
    }
    let mut slow = tokio::net::TcpStream::connect(&addr).await?;
    slow.write_all(b"GET /v1/read HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .await?;
    closed_within(&mut slow, Duration::from_secs(20)).await?;
    // A kept-alive connection that goes silent after one answer is closed too.
    let mut idle = tokio::net::TcpStream::connect(&addr).await?;
    idle.write_all(b"GET /v1/read HTTP/1.1\r\nHost: x\r\n\r\n")
        .await?;
    let answer = closed_within(&mut idle, Duration::from_secs(20)).await?;
    assert!(
        String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 "),
        "{:?}",
        String::from_utf8_lossy(&answer)
    );
    // Others are served meanwhile.
    let status = reqwest::get(format!("{}/v1/read", engine.http))
        .await?
        .status();
    assert!(status.is_success() || status.is_client_error(), "{status}");
    Ok(())
}
