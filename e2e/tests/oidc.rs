//! The spine with a real identity provider: npm `oidc-provider` on loopback over HTTPS (a CA of
//! the test's own), its access tokens (authorization code + PKCE) on HTTP, the WebSocket and gRPC,
//! verified by the running services through its JWKS. Dev tokens are refused; streams end when
//! their token expires; a rotated key set is picked up and the retired key stops verifying.

use std::time::Duration;

use anyhow::Context;
use e2e::manager::Manager;
use e2e::oidc::Provider;
use e2e::{Engine, Stack, eventually, webchat};
use tickets::Role;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_spine_runs_on_tokens_of_a_real_openid_provider_and_nothing_else() -> anyhow::Result<()>
{
    let stack = Stack::from_env().await?;
    let dir = std::env::temp_dir().join(format!("inbox-oidc-{}", Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir)?;
    let (ca, cert, key) = e2e::certs::make_certificates(&dir)?;
    let mut idp = Provider::start(&dir.join("keys-1.json"), Some((cert, key, ca))).await?;
    anyhow::ensure!(idp.issuer.starts_with("https://"), "{}", idp.issuer);
    let mut env = idp.engine_env();
    // Fast key refreshes, so the rotation below is seen within seconds.
    env.push(("INBOX_JWKS_REFRESH_SECS", "1".into()));
    env.push(("INBOX_JWKS_MIN_REFRESH_SECS", "0".into()));
    let engine = Engine::start_with(&stack, &env).await?;

    let run = Uuid::new_v4().simple().to_string();
    let client_id = format!("ivan-{run}");
    let client = idp
        .token(&client_id, &["client"], "Ivan Petrov", None, false)
        .await?;
    let manager = idp
        .token(&format!("alice-{run}"), &["manager"], "Alice", None, true)
        .await?;
    let http = reqwest::Client::new();

    // HTTP and the WebSocket with the provider's RS256 token, gRPC with its ES256 one.
    let mut events = webchat::connect(&engine, &client).await?;
    let (status, sent) =
        webchat::post_message(&http, &engine, &client, "Hello, my transfer is stuck").await?;
    assert_eq!(status, 202, "{sent}");
    let accepted = webchat::next_of(&mut events, "message_accepted", WAIT).await?;
    assert_eq!(accepted["message_id"], sent["message_id"]);
    let mut alice = Manager::connect(&engine.grpc, manager.clone()).await?;
    alice.set_ready().await?;
    let assigned = webchat::next_of(&mut events, "manager_assigned", WAIT).await?;
    assert_eq!(assigned["manager_name"], "Alice");
    let ticket_id = assigned["ticket_id"]
        .as_str()
        .context("ticket_id")?
        .to_owned();
    let (_, bodies) = alice
        .wait_for_ticket(&e2e::web_client(&client_id), "the client's message", |b| {
            !b.is_empty()
        })
        .await?;
    assert_eq!(bodies, vec!["Hello, my transfer is stuck".to_owned()]);
    alice.reply(&ticket_id, "Let me check", "oidc-r1").await?;
    let reply = webchat::next_of(&mut events, "manager_reply", WAIT).await?;
    assert_eq!(reply["body"], "Let me check");

    // A dev token (HS256, the committed secret) is nobody here.
    let dev = stack.token(Role::Client, &client_id, "Ivan")?;
    assert_eq!(
        webchat::post_message(&http, &engine, &dev, "hi").await?.0,
        401
    );
    let mut forged =
        Manager::connect(&engine.grpc, stack.token(Role::Manager, "alice", "A")?).await?;
    let err = forged
        .tickets(vec![])
        .await
        .err()
        .context("a dev token was accepted")?;
    assert_eq!(err.code(), tonic::Code::Unauthenticated);

    // A token whose `sub` the engine could not carry is a 400, not a poison record.
    let long = idp
        .token(&"x".repeat(300), &["client"], "Long", None, false)
        .await?;
    assert_eq!(
        webchat::post_message(&http, &engine, &long, "hi").await?.0,
        400
    );

    // Streams end when their token expires, telling the caller to come back with a fresh one.
    let short = idp
        .token(&client_id, &["client"], "Ivan Petrov", Some(3), false)
        .await?;
    let mut expiring = webchat::connect(&engine, &short).await?;
    let closed = e2e::ws_close_frame(&mut expiring, WAIT).await?;
    assert_eq!(closed.map(|f| f.code), Some(CloseCode::from(4001)));
    let short_manager = idp
        .token(
            &format!("alice-{run}"),
            &["manager"],
            "Alice",
            Some(3),
            false,
        )
        .await?;
    let short_alice = Manager::connect(&engine.grpc, short_manager).await?;
    let mut stream = short_alice.events().await?;
    let end = e2e::stream_end_status(&mut stream, WAIT).await?;
    assert_eq!(end.code(), tonic::Code::Unauthenticated, "{end:?}");
    assert!(gateway::stream::resume_cursor(&end).is_some(), "{end:?}");

    // Key rotation: the provider now signs with new keys only. A token of the new key verifies
    // at once (unknown `kid`: the key set is fetched again); the retired key's token stops
    // verifying once the scheduled refresh has dropped it.
    idp.restart_with_keys(&dir.join("keys-2.json")).await?;
    let rotated = idp
        .token(&client_id, &["client"], "Ivan Petrov", None, false)
        .await?;
    let (status, body) =
        webchat::post_message(&http, &engine, &rotated, "after the rotation").await?;
    assert_eq!(status, 202, "{body}");
    eventually(WAIT, "the retired key's token refused", || async {
        let (status, _) =
            webchat::post_message(&http, &engine, &client, "with the retired key").await?;
        Ok((status == 401).then_some(()))
    })
    .await?;
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
