//! Tracing, end to end: with `INBOX_OTLP_ENDPOINT` pointing at an OTLP collector (here one in the
//! test process), a client message is one trace from the HTTP edge through Kafka, the inbound
//! consumer's transaction (which stores and checks it) and the outbox relay to the WebSocket push,
//! and each hop is the child of the one before. With the endpoint unset (every other e2e test) nothing
//! is exported: the services make no exporter at all.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use e2e::{Engine, Stack, eventually};
use futures::StreamExt as _;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use serde_json::{Value, json};
use tickets::Role;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use uuid::Uuid;

/// One exported span, as the collector received it.
#[derive(Debug, Clone)]
struct Received {
    service: String,
    name: String,
    trace_id: Vec<u8>,
    span_id: Vec<u8>,
    parent_span_id: Vec<u8>,
    attributes: BTreeMap<String, String>,
}

#[derive(Clone, Default)]
struct Collector {
    spans: Arc<Mutex<Vec<Received>>>,
}

fn text(v: &Option<opentelemetry_proto::tonic::common::v1::AnyValue>) -> String {
    match v.as_ref().and_then(|v| v.value.as_ref()) {
        Some(AnyValue::StringValue(s)) => s.clone(),
        Some(AnyValue::IntValue(i)) => i.to_string(),
        Some(AnyValue::BoolValue(b)) => b.to_string(),
        Some(AnyValue::DoubleValue(d)) => d.to_string(),
        other => format!("{other:?}"),
    }
}

fn attributes(kvs: &[KeyValue]) -> BTreeMap<String, String> {
    kvs.iter()
        .map(|kv| (kv.key.clone(), text(&kv.value)))
        .collect()
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut received = Vec::new();
        for rs in request.into_inner().resource_spans {
            let resource = rs
                .resource
                .map(|r| attributes(&r.attributes))
                .unwrap_or_default();
            let service = resource.get("service.name").cloned().unwrap_or_default();
            for span in rs.scope_spans.into_iter().flat_map(|s| s.spans) {
                received.push(Received {
                    service: service.clone(),
                    name: span.name,
                    trace_id: span.trace_id,
                    span_id: span.span_id,
                    parent_span_id: span.parent_span_id,
                    attributes: attributes(&span.attributes),
                });
            }
        }
        self.spans
            .lock()
            .map_err(|_| tonic::Status::internal("poisoned"))?
            .extend(received);
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

/// An OTLP/gRPC collector on a free loopback port: its endpoint URL and what it receives.
async fn collector() -> anyhow::Result<(String, Collector)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let collector = Collector::default();
    let service = TraceServiceServer::new(collector.clone());
    tokio::spawn(async move {
        let _ = tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener))
            .await;
    });
    Ok((url, collector))
}

/// The hops of a client message, in order: (service, span name, what it is a child of).
const HOPS: &[(&str, &str, Option<&str>)] = &[
    ("communication", "post_message", None),
    ("communication", "publish_message", Some("post_message")),
    ("workflow", "inbound_message", Some("publish_message")),
    ("workflow", "store_inbound", Some("inbound_message")),
    ("workflow", "relay_publish", Some("inbound_message")),
    // Woken by the outbox tail, which continues the message's stored trace as the relay does.
    ("communication", "ticket_event", Some("inbound_message")),
    ("communication", "websocket_push", Some("inbound_message")),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_message_is_one_trace_from_the_http_edge_to_the_websocket_push()
-> anyhow::Result<()> {
    let started = Instant::now();
    let stack = Stack::from_env().await?;
    let (endpoint, collector) = collector().await?;
    let engine = Engine::start_with(
        &stack,
        &[
            ("INBOX_OTLP_ENDPOINT", endpoint),
            // The SDK's batch interval (default 5 s), so the test waits for spans, not for it.
            ("OTEL_BSP_SCHEDULE_DELAY", "100".into()),
        ],
    )
    .await?;
    let subject = format!("client-{}", Uuid::new_v4().simple());
    let client_id = e2e::web_client(&subject);
    let token = stack.token(Role::Client, &subject, "Ivan Petrov")?;
    let (mut ws, _) = tokio_tungstenite::connect_async(format!(
        "ws://{}/v1/ws?token={token}",
        engine.http.trim_start_matches("http://")
    ))
    .await?;

    let base = format!("http://{}", engine.http.trim_start_matches("http://"));
    let resp = reqwest::Client::new()
        .post(format!("{base}/v1/messages"))
        .bearer_auth(&token)
        .json(&json!({"body": "My transfer is stuck", "client_message_id": Uuid::new_v4()}))
        .send()
        .await?;
    assert_eq!(resp.status().as_u16(), 202);
    let message_id = resp.json::<Value>().await?["message_id"]
        .as_str()
        .context("message_id")?
        .to_owned();
    // The push whose span ends the trace.
    tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(frame) = ws.next().await {
            if let WsMessage::Text(t) = frame? {
                let event: Value = serde_json::from_str(&t)?;
                if event["type"] == "message_accepted" && event["message_id"] == message_id {
                    return Ok(());
                }
            }
        }
        anyhow::bail!("websocket closed")
    })
    .await
    .context("no message_accepted on the WebSocket")??;

    let missing = Mutex::new(Vec::new());
    let trace = eventually(
        Duration::from_secs(60),
        "every hop of the message exported in one trace",
        || async {
            let spans = collector
                .spans
                .lock()
                .map_err(|_| anyhow::anyhow!("poisoned"))?
                .clone();
            let Some(root) = spans.iter().find(|s| {
                s.name == "post_message" && s.attributes.get("message_id") == Some(&message_id)
            }) else {
                return Ok(None);
            };
            let trace: Vec<Received> = spans
                .iter()
                .filter(|s| s.trace_id == root.trace_id)
                .cloned()
                .collect();
            let absent: Vec<&str> = HOPS
                .iter()
                .filter(|(service, name, _)| {
                    !trace
                        .iter()
                        .any(|s| s.service == *service && s.name == *name)
                })
                .map(|(_, name, _)| *name)
                .collect();
            let complete = absent.is_empty();
            if let Ok(mut m) = missing.lock() {
                *m = absent;
            }
            Ok(complete.then_some(trace))
        },
    )
    .await
    .with_context(|| {
        let names: Vec<(String, String)> = collector
            .spans
            .lock()
            .map(|s| {
                s.iter()
                    .map(|s| (s.service.clone(), s.name.clone()))
                    .collect()
            })
            .unwrap_or_default();
        format!("missing hops {missing:?}; received {names:?}")
    })?;

    let span = |name: &str| {
        trace
            .iter()
            .find(|s| s.name == name)
            .with_context(|| format!("no {name} span"))
    };
    for (service, name, parent) in HOPS {
        let s = span(name)?;
        assert_eq!(&s.service, service, "{name}");
        match parent {
            None => assert!(s.parent_span_id.is_empty(), "{name} is the root"),
            // Some span of that name (one per event for the relay and the push).
            Some(parent) => assert!(
                trace
                    .iter()
                    .any(|p| p.name == *parent && p.span_id == s.parent_span_id),
                "{name} must be a child of {parent}: {trace:#?}"
            ),
        }
    }
    for name in ["post_message", "inbound_message", "websocket_push"] {
        assert_eq!(
            span(name)?.attributes.get("client_id"),
            Some(&client_id),
            "{name} carries client_id"
        );
    }
    assert_eq!(
        span("inbound_message")?.attributes.get("message_id"),
        Some(&message_id)
    );
    eprintln!(
        "{} spans in the trace, {:.1} s in all",
        trace.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
