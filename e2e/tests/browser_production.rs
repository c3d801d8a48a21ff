//! The console's production login in a real browser: the engine in the production profile (TLS to
//! every dependency, tokens only from the identity provider) tells the console to sign in at the
//! provider (`/config.json`); Chromium goes through the authorization code + PKCE flow of a real
//! OpenID provider (npm `oidc-provider`), comes back signed in, works through gRPC-Web with the
//! provider's access token and renews it with the refresh token (`web/tests/oidc-flow.mjs`).

use std::time::Duration;

use e2e::oidc::Provider;
use e2e::secure_stack::SecureStack;
use e2e::{Engine, Stack};
use uuid::Uuid;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_production_the_console_signs_in_at_the_identity_provider_with_pkce_and_renews()
-> anyhow::Result<()> {
    // The shared stack's Temporal is behind the proxy: fail loudly when it is not up.
    Stack::from_env().await?;
    let stack = SecureStack::start().await?;
    let certs = stack.certs().clone();
    let console_port = e2e::free_port()?;
    let console = format!("http://127.0.0.1:{console_port}");
    let idp = Provider::start_for_console(
        &stack.dir().join("idp-keys.json"),
        Some((
            certs.server_cert.clone(),
            certs.server_key.clone(),
            certs.ca.clone(),
        )),
        Some(format!("{console}/")),
    )
    .await?;
    let mut env = stack.engine_env();
    env.extend(idp.engine_env());
    env.push(("INBOX_PROFILE", "production".into()));
    for key in ["INBOX_AFC_KEY", "INBOX_DATA_KEY"] {
        env.push((
            key,
            format!("{}{}", Uuid::new_v4().simple(), Uuid::new_v4().simple()),
        ));
    }
    env.push(("INBOX_CONSOLE_ADDR", format!("127.0.0.1:{console_port}")));
    env.push(("INBOX_CONSOLE_OIDC_CLIENT_ID", "inbox-console".into()));
    let engine = Engine::start_on(&stack.database_url(), &env).await?;
    assert_eq!(engine.console, console);

    let config: serde_json::Value = reqwest::get(format!("{console}/config.json"))
        .await?
        .json()
        .await?;
    assert_eq!(config["login"], "oidc", "{config}");
    assert_eq!(config["issuer"], idp.issuer.as_str());
    assert_eq!(config["client_id"], "inbox-console");

    let shots = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("browser");
    e2e::webchat::browser_flow(
        "oidc-flow.mjs",
        &[
            ("CONSOLE_URL", console.clone()),
            ("IDP_URL", idp.issuer.clone()),
        ],
        &shots,
        Duration::from_secs(180),
    )
    .await?;
    Ok(())
}
