//! The whole engine in the production profile (`INBOX_PROFILE=production`) against real servers on
//! loopback with TLS on every connection (`e2e::secure_stack`): PostgreSQL that accepts only TLS
//! and a password, Tansu with SASL SCRAM-SHA-512 behind a TLS proxy, Temporal behind a TLS proxy
//! that requires a client certificate (and, beside it, one that takes an API key instead, as
//! Temporal Cloud does), and tokens of a real OpenID provider over HTTPS. Nothing
//! of the dev stack's settings reaches the services (`Engine::start_on`).
//!
//! Tansu drops every SASL session at ~54 s (it rejects re-authentication; librdkafka logs
//! `_AUTHENTICATION` / `_ALL_BROKERS_DOWN` errors and logs in again). The test takes ~10 s, well
//! under that; run by hand for two minutes, the spine kept working across those re-logins.

use std::time::Duration;

use anyhow::{Context, ensure};
use e2e::manager::Manager;
use e2e::oidc::Provider;
use e2e::secure_stack::SecureStack;
use e2e::{Engine, Service, Stack, webchat};
use sqlx::Connection;
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(60);

/// Starts `service` alone on the engine's settings with `changes` (an empty value: unset), and
/// returns its log once it has exited; fails if it exits 0 or is still running after [`WAIT`].
async fn start_fails(
    engine: &Engine,
    service: &str,
    changes: &[(&str, String)],
) -> anyhow::Result<String> {
    let mut cmd = tokio::process::Command::new(e2e::binary(service)?);
    cmd.env("RUST_LOG", "info,rdkafka=warn,temporalio_sdk_core=warn")
        .envs(engine.envs().iter().map(|(k, v)| (k, v)))
        .envs(changes.iter().map(|(k, v)| (k, v)))
        .env("NO_COLOR", "1")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let out = tokio::time::timeout(WAIT, cmd.output())
        .await
        .with_context(|| format!("{service} with {changes:?} still runs after {WAIT:?}"))??;
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    ensure!(
        !out.status.success(),
        "{service} with {changes:?} exited 0:\n{log}"
    );
    Ok(log)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_production_the_spine_runs_over_verified_tls_and_a_service_without_the_right_ca_or_client_certificate_does_not_start()
-> anyhow::Result<()> {
    let started = std::time::Instant::now();
    // The shared stack's Temporal is behind the proxy: fail loudly when it is not up.
    Stack::from_env().await?;
    let stack = SecureStack::start().await?;
    let certs = stack.certs().clone();
    let idp = Provider::start(
        &stack.dir().join("idp-keys.json"),
        Some((
            certs.server_cert.clone(),
            certs.server_key.clone(),
            certs.ca.clone(),
        )),
    )
    .await?;
    eprintln!("[production] servers up after {:?}", started.elapsed());
    let mut env = stack.engine_env();
    env.extend(idp.engine_env());
    env.push(("INBOX_PROFILE", "production".into()));
    // AES-256-GCM key of messages to the AFC system (64 hex digits).
    env.push((
        "INBOX_AFC_KEY",
        format!("{}{}", Uuid::new_v4().simple(), Uuid::new_v4().simple()),
    ));
    // AES-256-GCM key of message bodies on Kafka and of blocked messages' audit copies.
    env.push((
        "INBOX_DATA_KEY",
        format!("{}{}", Uuid::new_v4().simple(), Uuid::new_v4().simple()),
    ));
    let engine = Engine::start_on(&stack.database_url(), &env).await?;
    eprintln!("[production] engine up after {:?}", started.elapsed());

    // Each service is ready, its dependencies included.
    let http = reqwest::Client::new();
    for service in Service::ALL {
        let url = format!("{}/readyz", engine.ops(service));
        let resp = http.get(&url).send().await?;
        let status = resp.status().as_u16();
        let body = resp.text().await?;
        assert_eq!(status, 200, "{service:?} {url}: {body}");
    }
    // The console's dev login does not exist here: tokens come from the identity provider only.
    let dev_login = http
        .post(format!("{}/dev/token", engine.console))
        .json(&serde_json::json!({ "user": "mallory", "role": "admin" }))
        .send()
        .await?;
    assert_eq!(
        dev_login.status().as_u16(),
        404,
        "a dev token in production"
    );
    // Every connection of the engine to PostgreSQL is TLS.
    let mut admin = sqlx::PgConnection::connect(&stack.admin_url()).await?;
    let (tls, all): (i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE s.ssl), count(*) FROM pg_stat_activity a \
         JOIN pg_stat_ssl s USING (pid) WHERE a.usename = $1",
    )
    .bind(e2e::secure_stack::USER)
    .fetch_one(&mut admin)
    .await?;
    admin.close().await?;
    assert!(all > 0 && tls == all, "{tls} of {all} connections are TLS");

    // The spine: a client's message over HTTP, accepted on the WebSocket; a card number blocked;
    // a manager (gRPC) says ready, is assigned and sees the first message only.
    let run = Uuid::new_v4().simple().to_string();
    let client_id = format!("ivan-{run}");
    let client = idp
        .token(&client_id, &["client"], "Ivan Petrov", None, false)
        .await?;
    let manager = idp
        .token(&format!("alice-{run}"), &["manager"], "Alice", None, true)
        .await?;
    let mut events = webchat::connect(&engine, &client).await?;
    let (status, sent) =
        webchat::post_message(&http, &engine, &client, "Hello, my transfer is stuck").await?;
    assert_eq!(status, 202, "{sent}");
    let accepted = webchat::next_of(&mut events, "message_accepted", WAIT).await?;
    assert_eq!(accepted["message_id"], sent["message_id"]);
    let (status, card) =
        webchat::post_message(&http, &engine, &client, "my card is 4111 1111 1111 1111").await?;
    assert_eq!(status, 202, "{card}");
    let blocked = webchat::next_of(&mut events, "message_blocked", WAIT).await?;
    assert_eq!(blocked["message_id"], card["message_id"]);
    let mut alice = Manager::connect(&engine.grpc, manager).await?;
    alice.set_ready().await?;
    let assigned = webchat::next_of(&mut events, "manager_assigned", WAIT).await?;
    assert_eq!(assigned["manager_name"], "Alice");
    let (ticket_id, bodies) = alice
        .wait_for_ticket(&e2e::web_client(&client_id), "the client's message", |b| {
            !b.is_empty()
        })
        .await?;
    assert_eq!(assigned["ticket_id"], ticket_id.as_str());
    assert_eq!(bodies, vec!["Hello, my transfer is stuck".to_owned()]);
    eprintln!("[production] spine done after {:?}", started.elapsed());

    // TLS is really verified: a CA that did not sign PostgreSQL's certificate, or no client
    // certificate for Temporal, and the service does not start: the gateway (PostgreSQL), the
    // workflow service (PostgreSQL first, then Temporal; the gateway never calls Temporal).
    let other = stack.dir().join("other-ca");
    std::fs::create_dir_all(&other)?;
    let (other_ca, _, _) = e2e::certs::make_certificates(&other)?;
    let wrong_ca = [("INBOX_DATABASE_URL", stack.database_url_with_ca(&other_ca))];
    let no_client_cert = [
        ("INBOX_TEMPORAL_CERT_FILE", String::new()),
        ("INBOX_TEMPORAL_KEY_FILE", String::new()),
    ];
    let (wrong_ca, no_client_cert) = tokio::join!(
        start_fails(&engine, "gateway", &wrong_ca),
        start_fails(&engine, "workflow", &no_client_cert),
    );
    let (wrong_ca, no_client_cert) = (wrong_ca?, no_client_cert?);
    // rustls finds an issuer of the same name whose key did not sign: `BadSignature`.
    assert!(
        wrong_ca.contains("connecting to PostgreSQL")
            && wrong_ca.contains("invalid peer certificate"),
        "{wrong_ca}"
    );
    // nginx's answer to a handshake without a certificate, as gRPC UNAUTHENTICATED.
    assert!(
        no_client_cert.contains("connecting to temporal")
            && no_client_cert.contains("Unauthenticated")
            && no_client_cert.contains("client certificate required"),
        "{no_client_cert}"
    );
    // PostgreSQL with a client certificate instead of a password: the engine's store connects
    // with `sslcert`/`sslkey` in the URL, and is refused without them.
    let with_cert = stack.database_url_with_client_certificate(true)?;
    let store = tickets::PgStore::connect_with(&with_cert, None, 1, "cert-check")
        .await
        .context("connecting to PostgreSQL with a client certificate")?;
    store.ping().await?;
    let without = stack.database_url_with_client_certificate(false)?;
    let refused = tickets::PgStore::connect_with(&without, None, 1, "cert-check").await;
    assert!(
        refused.is_err(),
        "PostgreSQL took the certificate role without a certificate"
    );

    // Temporal Cloud style: TLS and an API key instead of a client certificate. The engine's
    // client connects with the key, and is refused without it or with another.
    let with_key = stack.temporal_with_api_key(Some(stack.temporal_api_key()))?;
    workflow::client::connect(&with_key, "api-key-check")
        .await
        .context("connecting to Temporal with the API key")?;
    for key in [None, Some("not-the-key")] {
        let refused =
            workflow::client::connect(&stack.temporal_with_api_key(key)?, "api-key-check")
                .await
                .err()
                .with_context(|| format!("Temporal accepted the API key {key:?}"))?;
        assert!(refused.to_string().contains("invalid API key"), "{refused}");
    }
    eprintln!("[production] done after {:?}", started.elapsed());
    Ok(())
}
