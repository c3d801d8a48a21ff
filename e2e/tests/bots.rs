//! Queued bot commands through the real services and the example bot worker: a command reaches
//! no manager and its answer comes back in the client's chat; with the bot down the client is
//! told it did not answer (and `/manager`, whose spec entry says `hand_over`, reaches a ready
//! manager); a slow bot's answer after the timeout is never shown; an answer that can never be
//! applied goes to the dead letters. Every client face offers the spec's commands.

use std::time::Duration;

use anyhow::Context;
use e2e::bots::BotWorker;
use e2e::manager::{Manager, WAIT};
use e2e::webchat::{connect, next_of, post_message};
use e2e::{Engine, Stack, authed, eventually};
use rdkafka::Message as _;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::producer::FutureProducer;
use tickets::Role;

/// The default spec with a short command timeout (the slow bot answers after it).
fn spec_with_short_timeout(dir: &std::path::Path) -> anyhow::Result<std::path::PathBuf> {
    let text = std::fs::read_to_string(platform::workspace_root().join("workflows.yaml"))?;
    let short = text.replacen("bots:\n  timeout: 10s", "bots:\n  timeout: 1500ms", 1);
    anyhow::ensure!(
        short != text,
        "workflows.yaml has no `bots: timeout: 10s` to shorten"
    );
    let path = dir.join("workflows.yaml");
    std::fs::write(&path, short)?;
    Ok(path)
}

/// `inbox_bot_replies_total{outcome}` of the workflow service.
async fn replies_counted(engine: &Engine, outcome: &str) -> anyhow::Result<u64> {
    let text = reqwest::get(format!("{}/metrics", engine.ops(e2e::Service::Workflow)))
        .await?
        .text()
        .await?;
    let prefix = format!("inbox_bot_replies_total{{outcome=\"{outcome}\"}} ");
    Ok(text
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map_or(0, |v| v as u64))
}

async fn history(engine: &Engine, token: &str) -> anyhow::Result<String> {
    Ok(reqwest::Client::new()
        .get(format!("{}/v1/messages", engine.http))
        .bearer_auth(token)
        .send()
        .await?
        .text()
        .await?)
}

#[tokio::test(flavor = "multi_thread")]
async fn commands_are_answered_by_the_bot_timed_out_without_it_and_never_shown_to_a_manager()
-> anyhow::Result<()> {
    let stack = Stack::from_env().await?;
    let dir = std::env::temp_dir().join(format!("inbox-bots-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir)?;
    let spec = spec_with_short_timeout(&dir)?;
    let engine = Engine::start_with(&stack, &[("INBOX_SPEC", spec.display().to_string())]).await?;
    let prefix = engine
        .envs()
        .iter()
        .find(|(k, _)| k == "INBOX_TOPIC_PREFIX")
        .map(|(_, v)| v.clone())
        .context("no topic prefix")?;
    let http = reqwest::Client::new();
    let run = uuid::Uuid::new_v4().simple().to_string();
    let mut olga = Manager::connect(
        &engine.grpc,
        stack.token(Role::Manager, &format!("olga-{run}"), "Olga")?,
    )
    .await?;
    olga.set_ready().await?;

    // The bot is down: `/status` is told it did not answer; `/manager` goes to Olga instead.
    let ana = stack.token(Role::Client, &format!("ana-{run}"), "Ana")?;
    let mut ana_ws = connect(&engine, &ana).await?;
    let (status, _) = post_message(&http, &engine, &ana, "/status").await?;
    assert_eq!(status, 202);
    let told = next_of(&mut ana_ws, "bot_timed_out", WAIT).await?;
    assert!(
        told["body"]
            .as_str()
            .unwrap_or_default()
            .contains("did not answer"),
        "{told}"
    );
    assert_eq!(told["handed_over"], false);
    assert!(
        olga.tickets(vec![]).await?.is_empty(),
        "a command is no manager's"
    );

    post_message(&http, &engine, &ana, "/manager please").await?;
    let told = next_of(&mut ana_ws, "bot_timed_out", WAIT).await?;
    assert_eq!(told["handed_over"], true, "{told}");
    let (ticket, _) = olga
        .wait_for_message(&e2e::web_client(&format!("ana-{run}")), "/manager please")
        .await?;
    let seen = olga.messages(&ticket).await?;
    assert!(
        !seen.iter().any(|m| m.body == "/status"),
        "the command the bot kept is not on the manager's ticket: {seen:?}"
    );

    // A slow bot: its answer comes after the timeout and is only counted.
    let slow = BotWorker::start(&stack, &prefix, Duration::from_secs(4)).await?;
    let bo = stack.token(Role::Client, &format!("bo-{run}"), "Bo")?;
    let mut bo_ws = connect(&engine, &bo).await?;
    post_message(&http, &engine, &bo, "/rates").await?;
    next_of(&mut bo_ws, "bot_timed_out", WAIT).await?;
    let late_before = replies_counted(&engine, "late").await?;
    eventually(WAIT, "the slow bot's late answer", || async {
        Ok((replies_counted(&engine, "late").await? > late_before).then_some(()))
    })
    .await?;
    let chat = history(&engine, &bo).await?;
    assert!(
        !chat.contains("Example rates"),
        "a late answer is not shown: {chat}"
    );
    slow.kill().await?;

    // A bot that answers: the client reads it live and in their history; no manager does.
    let _bot = BotWorker::start(&stack, &prefix, Duration::ZERO).await?;
    let cy = stack.token(Role::Client, &format!("cy-{run}"), "Cy")?;
    let mut cy_ws = connect(&engine, &cy).await?;
    post_message(&http, &engine, &cy, "/status").await?;
    let answer = next_of(&mut cy_ws, "bot_replied", WAIT).await?;
    assert_eq!(answer["body"], "All bank services are working normally.");
    assert_eq!(answer["command"], "status");
    let chat = history(&engine, &cy).await?;
    assert!(
        chat.contains("All bank services are working normally."),
        "{chat}"
    );
    let olgas = olga.tickets(vec![]).await?;
    assert_eq!(olgas.len(), 1, "only Ana's handed-over command: {olgas:?}");

    // An answer that can never be applied goes to the dead letters with its reason.
    let producer: FutureProducer = platform::kafka::producer_config(&stack.kafka()).create()?;
    let replies = format!("{prefix}bot.replies");
    let forged = serde_json::json!({
        "correlationId": uuid::Uuid::new_v4(), "clientId": "web:nobody", "text": "hi",
    })
    .to_string();
    for value in ["not json", forged.as_str()] {
        platform::kafka::publish_acked(&producer, &replies, "x", value.as_bytes(), WAIT).await?;
    }
    let consumer: StreamConsumer = platform::kafka::config(&stack.kafka())
        .set("group.id", format!("bots-test-{run}"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()?;
    consumer.subscribe(&[format!("{prefix}bot.replies.dlq").as_str()])?;
    let mut reasons = Vec::new();
    while reasons.len() < 2 {
        let m = tokio::time::timeout(WAIT, consumer.recv())
            .await
            .context("the bad answers never reached the dead letters")??;
        let reason = m
            .headers()
            .and_then(|h| {
                rdkafka::message::Headers::iter(h)
                    .find(|h| h.key == "dead-letter-reason")
                    .and_then(|h| h.value)
                    .map(|v| String::from_utf8_lossy(v).into_owned())
            })
            .unwrap_or_default();
        reasons.push(reason);
    }
    assert!(reasons[0].contains("not a bot answer"), "{reasons:?}");
    assert!(reasons[1].contains("no command"), "{reasons:?}");
    Ok(())
}

/// The web chat (`GET /v1/commands`), the gRPC client API (`ListCommands`) and Telegram's command
/// menu (`setMyCommands`) all offer the spec's bot commands, in its order.
#[tokio::test(flavor = "multi_thread")]
async fn every_client_face_offers_the_specs_commands() -> anyhow::Result<()> {
    let stack = Stack::from_env().await?;
    let spec = spec::Spec::load(&platform::workspace_root().join("workflows.yaml"))?;
    let listed: Vec<(String, String)> = spec
        .bots
        .offered()
        .map(|(name, description)| (name.to_owned(), description.to_owned()))
        .collect();
    anyhow::ensure!(!listed.is_empty(), "workflows.yaml lists no bot commands");
    let emulator = e2e::telegram::Emulator::start().await?;
    let bot_token = format!("4545:{}", uuid::Uuid::new_v4().simple());
    let engine = Engine::start_with(
        &stack,
        &[
            ("INBOX_TELEGRAM_TOKEN", bot_token.clone()),
            ("INBOX_TELEGRAM_API_URL", emulator.url.clone()),
        ],
    )
    .await?;
    let run = uuid::Uuid::new_v4().simple().to_string();
    let ana = stack.token(Role::Client, &format!("ana-{run}"), "Ana")?;

    let web: serde_json::Value = reqwest::Client::new()
        .get(format!("{}/v1/commands", engine.http))
        .bearer_auth(&ana)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let web: Vec<(String, String)> = web["commands"]
        .as_array()
        .context("no commands array")?
        .iter()
        .map(|c| {
            let text = |k: &str| c[k].as_str().unwrap_or_default().to_owned();
            (text("name"), text("description"))
        })
        .collect();
    assert_eq!(web, listed, "the web chat's list");

    let channel = tonic::transport::Channel::from_shared(engine.grpc.clone())?
        .connect()
        .await?;
    let grpc = proto::v1::client_service_client::ClientServiceClient::new(channel)
        .list_commands(authed(&ana, proto::v1::ListCommandsRequest {}))
        .await?
        .into_inner();
    let grpc: Vec<(String, String)> = grpc
        .commands
        .into_iter()
        .map(|c| (c.name, c.description))
        .collect();
    assert_eq!(grpc, listed, "ClientService.ListCommands");

    eventually(WAIT, "the Telegram command menu", || async {
        Ok((emulator.bot_commands(&bot_token).await? == listed).then_some(()))
    })
    .await?;
    Ok(())
}
