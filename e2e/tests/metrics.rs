//! The operators' view, end to end: after the spine ran (a message passes, a card number is
//! blocked, a ready manager takes the ticket, streams it and replies), each service's ops listener
//! answers `/readyz` and its `/metrics` show what happened; the client API does not serve them.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context;
use e2e::manager::Manager;
use e2e::{Engine, Service, Stack, eventually};
use futures::StreamExt;
use proto::v1;
use serde_json::json;
use tickets::Role;
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(60);
/// The workflow service reads its backlog gauges every 10 s.
const GAUGES: Duration = Duration::from_secs(30);

/// One series of a Prometheus text page: its labels and value.
type Series = (BTreeMap<String, String>, f64);

/// Every series named exactly `name` on the page.
fn series(page: &str, name: &str) -> Vec<Series> {
    page.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|line| {
            let (head, value) = line.rsplit_once(' ')?;
            let (metric, labels) = match head.split_once('{') {
                Some((m, rest)) => (m, rest.strip_suffix('}')?),
                None => (head, ""),
            };
            if metric != name {
                return None;
            }
            let labels = labels
                .split(',')
                .filter_map(|kv| {
                    let (k, v) = kv.split_once('=')?;
                    Some((k.to_owned(), v.trim_matches('"').to_owned()))
                })
                .collect();
            Some((labels, value.parse().ok()?))
        })
        .collect()
}

/// The sum of the series of `name` that carry every label of `want`; None when there is none.
fn total(pages: &[String], name: &str, want: &[(&str, &str)]) -> Option<f64> {
    let matching: Vec<f64> = pages
        .iter()
        .flat_map(|p| series(p, name))
        .filter(|(labels, _)| {
            want.iter()
                .all(|(k, v)| labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|(_, v)| v)
        .collect();
    (!matching.is_empty()).then(|| matching.iter().sum())
}

async fn scrape(http: &reqwest::Client, engine: &Engine, s: Service) -> anyhow::Result<String> {
    let url = format!("{}/metrics", engine.ops(s));
    let resp = http.get(&url).send().await?.error_for_status()?;
    Ok(resp.text().await?)
}

async fn scrape_all(http: &reqwest::Client, engine: &Engine) -> anyhow::Result<Vec<String>> {
    let mut pages = Vec::new();
    for s in Service::ALL {
        pages.push(scrape(http, engine, s).await?);
    }
    Ok(pages)
}

/// Waits until `name{want}` summed over the three services reaches `at_least`.
async fn reaches(
    http: &reqwest::Client,
    engine: &Engine,
    within: Duration,
    name: &str,
    want: &[(&str, &str)],
    at_least: f64,
) -> anyhow::Result<f64> {
    eventually(within, &format!("{name}{want:?} >= {at_least}"), || async {
        let pages = scrape_all(http, engine).await?;
        Ok(total(&pages, name, want).filter(|v| *v >= at_least))
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_service_reports_the_spine_on_its_ops_listener_and_not_on_the_client_api()
-> anyhow::Result<()> {
    let stack = Stack::from_env().await?;
    let engine = Engine::start(&stack).await?;
    let http = reqwest::Client::new();
    let run = Uuid::new_v4().simple().to_string();
    let subject = format!("client-{run}");
    let client_id = e2e::web_client(&subject);
    let client_token = stack.token(Role::Client, &subject, "Ivan Petrov")?;
    let alice_token = stack.token(Role::Manager, &format!("alice-{run}"), "Alice")?;

    for s in Service::ALL {
        let url = format!("{}/readyz", engine.ops(s));
        eventually(WAIT, &format!("{s:?} ready"), || async {
            Ok((http.get(&url).send().await?.status().as_u16() == 200).then_some(()))
        })
        .await?;
    }
    let public = http.get(format!("{}/metrics", engine.http)).send().await?;
    assert_eq!(
        public.status().as_u16(),
        404,
        "metrics stay off the client API"
    );

    // The client's WebSocket counts as live while it is open.
    let ws_url = format!(
        "ws://{}/v1/ws?token={client_token}",
        engine.http.trim_start_matches("http://")
    );
    let (ws, _) = tokio_tungstenite::connect_async(ws_url).await?;
    reaches(&http, &engine, WAIT, "inbox_live_websockets", &[], 1.0).await?;

    let hello = "Hello, my transfer is stuck";
    for body in [hello, "my card is 4111 1111 1111 1111"] {
        let resp = http
            .post(format!("{}/v1/messages", engine.http))
            .bearer_auth(&client_token)
            .json(&json!({"body": body, "client_message_id": Uuid::new_v4()}))
            .send()
            .await?;
        assert_eq!(resp.status().as_u16(), 202, "{}", resp.text().await?);
    }
    let accepted = total(
        &[scrape(&http, &engine, Service::Communication).await?],
        "inbox_messages_accepted_total",
        &[("channel", "web")],
    );
    assert!(
        accepted >= Some(2.0),
        "accepted after the ack: {accepted:?}"
    );
    for outcome in ["passed", "blocked"] {
        reaches(
            &http,
            &engine,
            WAIT,
            "inbox_afc_verdicts_total",
            &[("outcome", outcome)],
            1.0,
        )
        .await?;
    }

    let mut alice = Manager::connect(&engine.grpc, alice_token).await?;
    alice.set_ready().await?;
    let (ticket_id, _) = alice.wait_for_message(&client_id, hello).await?;
    let req = alice.req(v1::StreamEventsRequest { after_cursor: 0 });
    let mut stream = alice.client.stream_events(req).await?.into_inner();
    let live_managers = [("audience", "manager")];
    reaches(
        &http,
        &engine,
        WAIT,
        "inbox_live_streams",
        &live_managers,
        1.0,
    )
    .await?;
    alice.reply(&ticket_id, "Let me check", "r1").await?;
    let reply = tokio::time::timeout(WAIT, async {
        while let Some(e) = stream.next().await {
            if e?.kind == "manager_reply" {
                return Ok(());
            }
        }
        anyhow::bail!("the stream ended before the reply")
    })
    .await
    .context("no manager_reply on the stream")?;
    reply?;

    let pages = scrape_all(&http, &engine).await?;
    let waited = total(&pages, "inbox_assignment_wait_seconds_count", &[]);
    assert!(waited >= Some(1.0), "assignment wait: {waited:?}");
    let visible = total(&pages, "inbox_message_visible_seconds_count", &[]);
    assert!(visible >= Some(1.0), "time to visible: {visible:?}");
    let calls = total(&pages, "inbox_temporal_calls_total", &[]);
    assert!(calls > Some(0.0), "temporal calls: {calls:?}");
    // The messages themselves cost Temporal nothing: the inbound transaction checked them, and
    // the ticket's workflow was started once, when that transaction opened and queued it.
    let per_message = [("op", "signal_with_start_message")];
    assert_eq!(
        total(&pages, "inbox_temporal_calls_total", &per_message),
        None
    );
    let started = [("op", "signal_with_start_queued")];
    assert!(total(&pages, "inbox_temporal_calls_total", &started) >= Some(1.0));

    // The consumer lag and the backlog gauges come from periodic loops.
    eventually(WAIT, "consumer lag of the inbound topic", || async {
        let page = scrape(&http, &engine, Service::Workflow).await?;
        Ok(series(&page, "inbox_consumer_lag")
            .into_iter()
            .find(|(labels, _)| {
                labels
                    .get("topic")
                    .is_some_and(|t| t.ends_with("inbound.messages"))
                    && labels.contains_key("partition")
            }))
    })
    .await?;
    let assigned = [("queue", "general"), ("status", "assigned")];
    reaches(&http, &engine, GAUGES, "inbox_open_tickets", &assigned, 1.0).await?;
    let page = scrape(&http, &engine, Service::Workflow).await?;
    for gauge in [
        "inbox_ready_managers",
        "inbox_afc_pending_oldest_seconds",
        "inbox_outbox_unpublished",
        "inbox_outbox_oldest_unpublished_seconds",
    ] {
        assert!(!series(&page, gauge).is_empty(), "{gauge} is reported");
    }

    // A stream and a socket that end are no longer counted.
    drop(stream);
    drop(ws);
    eventually(WAIT, "streams and sockets closed", || async {
        let pages = scrape_all(&http, &engine).await?;
        let streams = total(&pages, "inbox_live_streams", &live_managers);
        let sockets = total(&pages, "inbox_live_websockets", &[]);
        Ok((streams == Some(0.0) && sockets == Some(0.0)).then_some(()))
    })
    .await?;
    Ok(())
}
