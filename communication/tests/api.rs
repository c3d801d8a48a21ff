//! The client HTTP API in process against a real PostgreSQL (`#[sqlx::test]`: a database per test).
//! These routes never touch Kafka, so the publisher points at an address nobody listens on.

use std::collections::BTreeSet;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use communication::http::{self, AppState};
use edge::ratelimit::{RateLimit, RateLimiter};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use sqlx::PgPool;
use tickets::{PgStore, Role};
use tower::ServiceExt;
use uuid::Uuid;

const SECRET: &[u8] = b"api-test-secret-0123456789abcdef0123";

async fn app(pool: PgPool, limit: RateLimit) -> anyhow::Result<(Router, PgStore)> {
    let store = PgStore::from_pool(pool);
    store.migrate().await?;
    let state = AppState {
        chat: edge::client::ClientChat {
            store: store.clone(),
            publisher: edge::publish::Publisher::new(
                &platform::kafka::KafkaSettings::plaintext("127.0.0.1:9"),
                "unused".into(),
                None,
            )?,
            verifier: edge::auth::Verifier::hs256(SECRET, None),
            limiter: RateLimiter::new(limit),
            streams: edge::stream::Streams {
                store: store.clone(),
                hub: std::sync::Arc::new(edge::stream::Hub::default()),
                config: edge::stream::StreamConfig::default(),
                shutdown: tokio_util::sync::CancellationToken::new(),
            },
            files: edge::files::Files::open(
                &format!(
                    "file://{}/inbox-api-test-files",
                    std::env::temp_dir().display()
                ),
                edge::files::Limits::default(),
            )
            .map_err(anyhow::Error::msg)?,
            commands: edge::client::BotCommand::list([
                ("status", "Are the bank's services working?"),
                ("manager", ""),
            ]),
        },
        sockets: tokio_util::task::TaskTracker::new(),
    };
    Ok((http::router(state), store))
}

fn no_limit() -> RateLimit {
    RateLimit {
        burst: 1,
        per_second: 0.0,
    }
}

fn token(user: &str) -> anyhow::Result<String> {
    Ok(edge::auth::issue_dev_token(
        SECRET,
        "",
        user,
        Some(user),
        &[Role::Client],
        600,
    )?)
}

async fn call(
    app: &Router,
    method: &str,
    uri: &str,
    user: &str,
    body: Option<Value>,
) -> anyhow::Result<(StatusCode, axum::http::HeaderMap, Value)> {
    let mut req = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::AUTHORIZATION, format!("Bearer {}", token(user)?));
    let body = match body {
        Some(b) => {
            req = req.header(header::CONTENT_TYPE, "application/json");
            Body::from(b.to_string())
        }
        None => Body::empty(),
    };
    let res = app.clone().oneshot(req.body(body)?).await?;
    let (parts, body) = res.into_parts();
    let bytes = body.collect().await?.to_bytes();
    let json = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into_owned()))
    };
    Ok((parts.status, parts.headers, json))
}

/// Inserts one message row directly (these tests read the chat; how rows get there is the
/// workflow's business and tested there). Rows get increasing timestamps in call order.
async fn message(
    store: &PgStore,
    client: &str,
    ticket: Option<Uuid>,
    author: &str,
    afc_status: &str,
    body: &str,
) -> anyhow::Result<Uuid> {
    let id = Uuid::new_v4();
    sqlx::query(
        "INSERT INTO messages (id, client_id, ticket_id, author, channel, external_id, body,
                               afc_status, created_at)
         VALUES ($1, $2, $3, $4, 'web', $1::text, $5, $6,
                 now() + (SELECT count(*) FROM messages) * interval '1 ms')",
    )
    .bind(id)
    .bind(client)
    .bind(ticket)
    .bind(author)
    .bind(body)
    .bind(afc_status)
    .execute(store.pool())
    .await?;
    Ok(id)
}

async fn ticket(store: &PgStore, client: &str, status: &str) -> anyhow::Result<Uuid> {
    let id = Uuid::new_v4();
    sqlx::query("INSERT INTO clients (id) VALUES ($1) ON CONFLICT DO NOTHING")
        .bind(client)
        .execute(store.pool())
        .await?;
    sqlx::query("INSERT INTO tickets (id, client_id, status) VALUES ($1, $2, $3)")
        .bind(id)
        .bind(client)
        .bind(status)
        .execute(store.pool())
        .await?;
    Ok(id)
}

/// Two tickets of `ivan`: the first answered and closed, the second with a blocked and a pending
/// message; plus another client's message. Returns the bodies the chat must show, in order.
async fn two_tickets(store: &PgStore) -> anyhow::Result<Vec<String>> {
    let t1 = ticket(store, "web:ivan", "closed").await?;
    message(
        store,
        "web:ivan",
        Some(t1),
        "client",
        "passed",
        "my transfer is stuck",
    )
    .await?;
    message(
        store,
        "web:ivan",
        Some(t1),
        "system",
        "not_checked",
        "Alice joined the chat.",
    )
    .await?;
    message(
        store,
        "web:ivan",
        Some(t1),
        "manager",
        "not_checked",
        "let me check",
    )
    .await?;
    message(
        store,
        "web:ivan",
        Some(t1),
        "system",
        "not_checked",
        "Ticket closed.",
    )
    .await?;
    let t2 = ticket(store, "web:ivan", "open").await?;
    message(
        store,
        "web:ivan",
        Some(t2),
        "client",
        "blocked",
        "card 4111 1111 1111 1111",
    )
    .await?;
    message(
        store,
        "web:ivan",
        Some(t2),
        "system",
        "not_checked",
        "Never send card numbers.",
    )
    .await?;
    message(store, "web:ivan", None, "client", "pending", "still there?").await?;
    ticket(store, "web:petr", "open").await?;
    message(
        store,
        "web:petr",
        None,
        "client",
        "pending",
        "petr's own message",
    )
    .await?;
    Ok(vec![
        "my transfer is stuck".into(),
        "Alice joined the chat.".into(),
        "let me check".into(),
        "Ticket closed.".into(),
        "Never send card numbers.".into(),
        "still there?".into(),
    ])
}

#[sqlx::test(migrations = false)]
async fn history_pages_back_through_every_ticket_as_one_chat_without_blocked_content(
    pool: PgPool,
) -> anyhow::Result<()> {
    let (app, store) = app(pool, no_limit()).await?;
    let expected = two_tickets(&store).await?;
    let mut pages = Vec::new();
    let mut uri = "/v1/messages?limit=2".to_owned();
    loop {
        let (status, _, page) = call(&app, "GET", &uri, "ivan", None).await?;
        assert_eq!(status, StatusCode::OK, "{page}");
        let messages = page["messages"].as_array().cloned().unwrap_or_default();
        assert!(messages.len() <= 2);
        pages.push(messages);
        match page["next_before"].as_str() {
            Some(c) => uri = format!("/v1/messages?limit=2&before={c}"),
            None => break,
        }
    }
    pages.reverse();
    let chat: Vec<Value> = pages.into_iter().flatten().collect();
    let bodies: Vec<&str> = chat.iter().filter_map(|m| m["body"].as_str()).collect();
    assert_eq!(bodies, expected);
    let tickets: BTreeSet<&str> = chat
        .iter()
        .filter_map(|m| m["ticket_id"].as_str())
        .collect();
    assert_eq!(tickets.len(), 2, "one chat across both tickets");
    assert_eq!(chat.last().map(|m| &m["status"]), Some(&json!("pending")));
    assert_eq!(chat[0]["status"], "delivered");
    Ok(())
}

#[sqlx::test(migrations = false)]
async fn history_rejects_a_forged_cursor_and_an_oversized_page(pool: PgPool) -> anyhow::Result<()> {
    let (app, _) = app(pool, no_limit()).await?;
    let (status, _, body) = call(&app, "GET", "/v1/messages?before=zzz", "ivan", None).await?;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["error"]["field"], "before");
    let (status, _, body) = call(&app, "GET", "/v1/messages?limit=1000", "ivan", None).await?;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["error"]["field"], "limit");
    Ok(())
}

#[sqlx::test(migrations = false)]
async fn read_cursor_counts_unread_messages_to_the_client_and_never_moves_back(
    pool: PgPool,
) -> anyhow::Result<()> {
    let (app, store) = app(pool, no_limit()).await?;
    two_tickets(&store).await?;
    let (status, _, state) = call(&app, "GET", "/v1/read", "ivan", None).await?;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(state, json!({ "read_up_to": null, "unread": 4 }));

    let (_, _, page) = call(&app, "GET", "/v1/messages", "ivan", None).await?;
    let id_of = |body: &str| {
        page["messages"]
            .as_array()
            .and_then(|ms| ms.iter().find(|m| m["body"] == body))
            .map(|m| m["id"].clone())
            .unwrap_or(Value::Null)
    };
    let reply = id_of("let me check");
    let (status, _, state) = call(
        &app,
        "POST",
        "/v1/read",
        "ivan",
        Some(json!({ "message_id": reply })),
    )
    .await?;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(state, json!({ "read_up_to": reply, "unread": 2 }));

    // Reading an older message (another device lagging behind) does not move the cursor back.
    let first = id_of("my transfer is stuck");
    let (_, _, state) = call(
        &app,
        "POST",
        "/v1/read",
        "ivan",
        Some(json!({ "message_id": first })),
    )
    .await?;
    assert_eq!(state, json!({ "read_up_to": reply, "unread": 2 }));

    // Another client's message is not part of this chat.
    let (status, _, _) = call(
        &app,
        "POST",
        "/v1/read",
        "petr",
        Some(json!({ "message_id": reply })),
    )
    .await?;
    assert_eq!(status, StatusCode::NOT_FOUND);
    Ok(())
}

/// A token's subject names a web client only: one that has the form of a Telegram or email
/// client id (`tg:4242`) is the web client `web:tg:4242`, and reads nothing of the Telegram
/// client's chat. A client from before the prefixes (id `olga`) keeps their chat.
#[sqlx::test(migrations = false)]
async fn a_client_lists_the_bots_commands_in_the_specs_order(pool: PgPool) -> anyhow::Result<()> {
    let (app, _) = app(pool, no_limit()).await?;
    let (status, _, body) = call(&app, "GET", "/v1/commands", "ivan", None).await?;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        json!({ "commands": [
            { "name": "status", "description": "Are the bank's services working?" },
            { "name": "manager", "description": "" }
        ] })
    );
    let res = app
        .clone()
        .oneshot(Request::builder().uri("/v1/commands").body(Body::empty())?)
        .await?;
    assert_eq!(
        res.status(),
        StatusCode::UNAUTHORIZED,
        "a client's list only"
    );
    Ok(())
}

#[sqlx::test(migrations = false)]
async fn a_token_subject_names_a_web_client_and_never_another_channels(
    pool: PgPool,
) -> anyhow::Result<()> {
    let (app, store) = app(pool, RateLimit::default()).await?;
    let tg = ticket(&store, "tg:4242", "open").await?;
    message(
        &store,
        "tg:4242",
        Some(tg),
        "client",
        "passed",
        "telegram secret",
    )
    .await?;
    for user in ["tg:4242", "email:victim@bank.test", "TG:4242"] {
        let (status, _, page) = call(&app, "GET", "/v1/messages", user, None).await?;
        assert_eq!(status, StatusCode::OK, "{user}: {page}");
        assert_eq!(page["messages"], json!([]), "{user} reads another's chat");
    }
    let owner: Option<String> =
        sqlx::query_scalar("SELECT client_id FROM web_identities WHERE subject = 'tg:4242'")
            .fetch_optional(store.pool())
            .await?;
    assert_eq!(owner.as_deref(), Some("web:tg:4242"));

    // An id from before the prefixes, migrated into the identity table: still its client's.
    let old = ticket(&store, "olga", "open").await?;
    message(
        &store,
        "olga",
        Some(old),
        "client",
        "passed",
        "from last year",
    )
    .await?;
    sqlx::query(
        "INSERT INTO web_identities (issuer, subject, client_id) VALUES (NULL, 'olga', 'olga')",
    )
    .execute(store.pool())
    .await?;
    let (_, _, page) = call(&app, "GET", "/v1/messages", "olga", None).await?;
    let bodies: Vec<&str> = page["messages"]
        .as_array()
        .map(|m| m.iter().filter_map(|m| m["body"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(bodies, ["from last year"], "{page}");
    Ok(())
}

#[sqlx::test(migrations = false)]
async fn a_client_over_its_rate_gets_429_with_retry_after_and_others_do_not(
    pool: PgPool,
) -> anyhow::Result<()> {
    let (app, _) = app(
        pool,
        RateLimit {
            burst: 2,
            per_second: 0.1,
        },
    )
    .await?;
    for _ in 0..2 {
        let (status, _, _) = call(&app, "GET", "/v1/read", "ivan", None).await?;
        assert_eq!(status, StatusCode::OK);
    }
    let (status, headers, body) = call(&app, "GET", "/v1/read", "ivan", None).await?;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(body["error"]["code"], "rate_limited");
    let retry_after: u64 = headers
        .get(header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no Retry-After header: {headers:?}"))?;
    assert!((1..=10).contains(&retry_after), "{retry_after}");
    let (status, _, _) = call(&app, "GET", "/v1/read", "petr", None).await?;
    assert_eq!(status, StatusCode::OK);
    Ok(())
}

#[sqlx::test(migrations = false)]
async fn openapi_document_describes_exactly_the_routes_the_router_serves(
    pool: PgPool,
) -> anyhow::Result<()> {
    let (app, _) = app(pool, no_limit()).await?;
    let (status, _, served) = call(&app, "GET", "/v1/openapi.json", "ivan", None).await?;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(served, communication::openapi::document());

    let documented: BTreeSet<(String, String)> = served["paths"]
        .as_object()
        .into_iter()
        .flatten()
        .flat_map(|(path, ops)| {
            ops.as_object()
                .into_iter()
                .flatten()
                .map(move |(method, _)| (method.to_uppercase(), path.clone()))
        })
        .collect();
    let routed: BTreeSet<(String, String)> = http::routes()
        .into_iter()
        .map(|(m, p, _)| (m.to_string(), p.to_owned()))
        .collect();
    assert_eq!(documented, routed);
    // And the router really answers each documented operation (no 404 / 405).
    for (method, path) in &documented {
        let res = app
            .clone()
            .oneshot(
                Request::builder()
                    .method(method.as_str())
                    .uri(path)
                    .body(Body::empty())?,
            )
            .await?;
        assert!(
            res.status() != StatusCode::NOT_FOUND && res.status() != StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path}: {}",
            res.status()
        );
    }
    Ok(())
}
