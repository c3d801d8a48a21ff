//! The web apps in a real browser (Debian's Chromium driven by playwright-core, `web/tests/
//! flow.mjs`) against the three services: a client in the widget, embedded in a page of another
//! origin, and a manager in the console, in two browser contexts. The client writes, the manager
//! goes ready and receives the ticket live, replies, the client sees it; the widget offers the
//! bot's commands as the client types `/`; a card number is blocked,
//! the client sees the warning and the manager's page never holds it; a double-clicked reply is
//! sent once; the client's network is cut and restored and nothing is lost or doubled; a canned
//! response is inserted with `/hel`; each side sees the other typing, and after those cursor-0
//! events both reconnect and resume with nothing missed or doubled; the
//! ticket is transferred to a second manager whose console receives it live, noted and resolved;
//! the client rates it 5 and an admin's supervisor view shows the rating, its reports and a dry
//! run of a changed spec (a bad one's line and column, the ticket moving queue); files go both ways (the
//! client's PNG is a thumbnail in the console, a refused upload shows the engine's reason, a
//! picture sent offline arrives once, the manager's PDF downloads in the widget, a text file with
//! a card number never shows in the console, not even its name); axe-core finds no
//! serious or critical accessibility violation on any of the pages. The screenshots land in this
//! test's output folder (`target/tmp/browser/`).

use std::time::Duration;

use anyhow::Context;
use e2e::{Engine, Stack};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_in_the_widget_and_a_manager_in_the_console_walk_the_whole_flow()
-> anyhow::Result<()> {
    let stack = Stack::from_env().await?;
    let widget = platform::workspace_root().join("web/dist/widget/widget.js");
    anyhow::ensure!(
        widget.is_file(),
        "{} is not built: `scripts/web.sh` (make test runs it before the tests)",
        widget.display()
    );
    // The page that embeds the widget is the bank's site: another origin, allowed by CORS.
    let embed_port = e2e::free_port()?;
    let embed_origin = format!("http://127.0.0.1:{embed_port}");
    let engine =
        Engine::start_with(&stack, &[("INBOX_CORS_ORIGINS", embed_origin.clone())]).await?;
    let shots = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("browser");
    e2e::webchat::browser_flow(
        "flow.mjs",
        &[
            ("CONSOLE_URL", engine.console.clone()),
            ("WIDGET_URL", engine.http.clone()),
            ("EMBED_PORT", embed_port.to_string()),
        ],
        &shots,
        Duration::from_secs(240),
    )
    .await?;
    for shot in ["console.png", "supervisor.png", "widget.png"] {
        let path = shots.join(shot);
        let size = std::fs::metadata(&path)
            .with_context(|| format!("no screenshot {}", path.display()))?
            .len();
        anyhow::ensure!(size > 1000, "{} is empty", path.display());
        eprintln!("screenshot {}", path.display());
    }
    Ok(())
}

/// The console origin without a browser: the dev login's token endpoint (refusing a bad role),
/// gRPC-Web framing of `ManagerService.ListTickets` with that token (and `UNAUTHENTICATED`
/// without one), and CORS answering the embedding site's preflight but not another site's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_origin_speaks_grpc_web_issues_dev_tokens_and_allows_only_the_configured_sites()
-> anyhow::Result<()> {
    let stack = Stack::from_env().await?;
    let site = "http://bank.test:8080";
    let engine = Engine::start_with(&stack, &[("INBOX_CORS_ORIGINS", site.into())]).await?;
    let http = reqwest::Client::new();
    let token_of = |role: &'static str| {
        http.post(format!("{}/dev/token", engine.console))
            .json(&serde_json::json!({ "user": "olga", "role": role, "name": "Olga" }))
            .send()
    };
    let res = token_of("manager").await?;
    anyhow::ensure!(res.status() == 200, "dev token: {}", res.status());
    let token = res.json::<serde_json::Value>().await?["token"]
        .as_str()
        .context("no token")?
        .to_owned();
    let bad = token_of("root").await?;
    assert_eq!(bad.status(), 400);
    assert_eq!(
        bad.json::<serde_json::Value>().await?["error"]["field"],
        "role"
    );

    // gRPC-Web: a length-prefixed empty ListTicketsRequest; the status comes in a trailer frame.
    let call = |bearer: Option<String>| {
        let mut req = http
            .post(format!(
                "{}/inbox.v1.ManagerService/ListTickets",
                engine.console
            ))
            .header("content-type", "application/grpc-web+proto")
            .header("x-grpc-web", "1")
            .body(vec![0u8, 0, 0, 0, 0]);
        if let Some(t) = bearer {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        req.send()
    };
    let grpc_status = |res: reqwest::Response| async move {
        let header = res
            .headers()
            .get("grpc-status")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = res.bytes().await?;
        let trailer = String::from_utf8_lossy(&body).into_owned();
        // The trailer frame (flag 0x80, length) holds `grpc-status:<code>\r\n…` as text.
        anyhow::Ok(header.or_else(|| {
            let at = trailer.find("grpc-status:")? + "grpc-status:".len();
            trailer[at..].split_whitespace().next().map(str::to_owned)
        }))
    };
    let ok = call(Some(token)).await?;
    assert_eq!(ok.status(), 200);
    assert_eq!(grpc_status(ok).await?.as_deref(), Some("0"));
    let denied = call(None).await?;
    assert_eq!(
        grpc_status(denied).await?.as_deref(),
        Some("16"),
        "UNAUTHENTICATED"
    );

    // CORS: the configured site may call; another may not.
    let preflight = |origin: &'static str| {
        http.request(
            reqwest::Method::OPTIONS,
            format!("{}/inbox.v1.ManagerService/ListTickets", engine.console),
        )
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "content-type,x-grpc-web,authorization",
        )
        .send()
    };
    let allowed = preflight(site).await?;
    assert_eq!(
        allowed
            .headers()
            .get("access-control-allow-origin")
            .and_then(|v| v.to_str().ok()),
        Some(site)
    );
    let other = preflight("https://evil.test").await?;
    assert!(other.headers().get("access-control-allow-origin").is_none());
    // The client API of communication answers the site's preflight too.
    let api = http
        .request(
            reqwest::Method::OPTIONS,
            format!("{}/v1/messages", engine.http),
        )
        .header("origin", site)
        .header("access-control-request-method", "POST")
        .send()
        .await?;
    assert_eq!(
        api.headers()
            .get("access-control-allow-origin")
            .and_then(|v| v.to_str().ok()),
        Some(site)
    );
    Ok(())
}
