//! The load: clients writing through the real client edge (web chat HTTP and gRPC
//! `ClientService/SendMessage`) and ready managers following their `StreamEvents`, recording when
//! each message was accepted and when it became visible to its manager.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures::StreamExt;
use proto::v1::{
    self, client_service_client::ClientServiceClient, manager_service_client::ManagerServiceClient,
};
use rdkafka::consumer::{BaseConsumer, Consumer};
use sqlx::PgPool;
use tokio::sync::{Mutex, Notify, Semaphore, watch};
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;

use crate::stats::Summary;

pub fn authed<T>(token: &str, msg: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    if let Ok(v) = MetadataValue::try_from(format!("Bearer {token}")) {
        r.metadata_mut().insert("authorization", v);
    }
    r
}

pub struct BenchClient {
    pub token: String,
    pub grpc: bool,
}

/// When each message was accepted at the edge and when its manager saw it.
#[derive(Default)]
pub struct Clock {
    /// Wall clock and monotonic clock read together: turns an `Instant` into a time comparable
    /// with PostgreSQL's timestamps (same machine).
    pub anchor: Anchor,
    pub accepted: Mutex<HashMap<String, Instant>>,
    pub visible: Mutex<HashMap<String, Instant>>,
    pub seen: Notify,
    pub replies: AtomicUsize,
    pub reply_errors: AtomicUsize,
}

pub struct Anchor {
    wall: std::time::SystemTime,
    mono: Instant,
}

impl Default for Anchor {
    fn default() -> Self {
        Self {
            wall: std::time::SystemTime::now(),
            mono: Instant::now(),
        }
    }
}

impl Anchor {
    /// Milliseconds since the Unix epoch at `at`.
    pub fn epoch_ms(&self, at: Instant) -> f64 {
        let base = self
            .wall
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64()
            * 1000.0;
        let offset_ms = if at >= self.mono {
            (at - self.mono).as_secs_f64() * 1000.0
        } else {
            -((self.mono - at).as_secs_f64() * 1000.0)
        };
        base + offset_ms
    }
}

/// The engine's client edge.
pub struct Edge {
    pub http_base: String,
    pub http: reqwest::Client,
    /// A few HTTP/2 connections to the gateway, used in turn.
    pub channels: Vec<Channel>,
    next: AtomicUsize,
}

impl Edge {
    pub async fn connect(http: &str, grpc: &str, connections: usize) -> anyhow::Result<Self> {
        let mut channels = Vec::new();
        for _ in 0..connections.max(1) {
            channels.push(Channel::from_shared(grpc.to_owned())?.connect().await?);
        }
        Ok(Self {
            http_base: format!("http://{}", http.trim_start_matches("http://")),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .pool_max_idle_per_host(256)
                .build()?,
            channels,
            next: AtomicUsize::new(0),
        })
    }

    pub fn channel(&self) -> Channel {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.channels.len();
        self.channels[i].clone()
    }

    /// Sends one message; returns its id once the edge accepted it (Kafka acknowledged).
    pub async fn send(&self, c: &BenchClient, body: String) -> anyhow::Result<String> {
        let key = uuid::Uuid::new_v4();
        if c.grpc {
            let r = ClientServiceClient::new(self.channel())
                .send_message(authed(
                    &c.token,
                    v1::SendMessageRequest {
                        body,
                        idempotency_key: key.to_string(),
                        ..Default::default()
                    },
                ))
                .await?;
            Ok(r.into_inner().message_id)
        } else {
            let resp = self
                .http
                .post(format!("{}/v1/messages", self.http_base))
                .bearer_auth(&c.token)
                .json(&serde_json::json!({"body": body, "client_message_id": key}))
                .send()
                .await?;
            if resp.status().as_u16() != 202 {
                bail!(
                    "{} {}",
                    resp.status(),
                    resp.text().await.unwrap_or_default()
                );
            }
            let v: serde_json::Value = resp.json().await?;
            v["message_id"]
                .as_str()
                .map(str::to_owned)
                .context("202 without message_id")
        }
    }
}

fn payload_str(e: &v1::Event, key: &str) -> Option<String> {
    match e.payload.as_ref()?.fields.get(key)?.kind.as_ref()? {
        prost_types::value::Kind::StringValue(s) => Some(s.clone()),
        _ => None,
    }
}

/// A ready manager: follows its stream (resuming from its cursor if it breaks), records when each
/// client message became visible, and replies to every `reply_every`-th one.
pub async fn manager(
    edge: Arc<Edge>,
    token: String,
    clock: Arc<Clock>,
    reply_every: u64,
    mut stop: watch::Receiver<bool>,
) {
    let mut cursor = 0;
    let mut n = 0u64;
    while !*stop.borrow() {
        let req = authed(
            &token,
            v1::StreamEventsRequest {
                after_cursor: cursor,
            },
        );
        let mut stream = match ManagerServiceClient::new(edge.channel())
            .stream_events(req)
            .await
        {
            Ok(s) => s.into_inner(),
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        loop {
            let item = tokio::select! {
                _ = stop.changed() => return,
                i = stream.next() => i,
            };
            let Some(Ok(e)) = item else { break };
            cursor = e.cursor;
            if e.kind != "message_visible" {
                continue;
            }
            let Some(message_id) = payload_str(&e, "message_id") else {
                continue;
            };
            clock
                .visible
                .lock()
                .await
                .insert(message_id.clone(), Instant::now());
            clock.seen.notify_waiters();
            n += 1;
            if reply_every > 0 && n.is_multiple_of(reply_every) {
                let (edge, token, clock) = (edge.clone(), token.clone(), clock.clone());
                let ticket_id = e.ticket_id.clone();
                tokio::spawn(async move {
                    let r = ManagerServiceClient::new(edge.channel())
                        .send_reply(authed(
                            &token,
                            v1::SendReplyRequest {
                                ticket_id,
                                body: "Thank you, checking".into(),
                                idempotency_key: message_id,
                                ..Default::default()
                            },
                        ))
                        .await;
                    let counter = if r.is_ok() {
                        &clock.replies
                    } else {
                        &clock.reply_errors
                    };
                    counter.fetch_add(1, Ordering::Relaxed);
                });
            }
        }
    }
}

/// What one rate step measured.
#[derive(Debug, Default, serde::Serialize)]
pub struct StepFigures {
    pub target_rate: f64,
    pub seconds: f64,
    pub offered: usize,
    pub accepted: usize,
    pub send_errors: usize,
    /// Not offered because `max_inflight` sends were already waiting.
    pub shed: usize,
    pub accepted_per_s: f64,
    pub visible: usize,
    pub not_visible_after_drain: usize,
    /// Accepted at the edge → visible in the manager's stream.
    pub latency_ms: Summary,
    /// Send call → accepted (Kafka-acknowledged) at the edge.
    pub accept_ms: Summary,
    /// Stored by the workflow service → `message_visible` committed (AFC check in the ticket
    /// workflow, from the store's clock).
    pub afc_ms: Summary,
    pub max_kafka_lag: i64,
    pub open_tickets: i64,
    /// Where the accepted→visible time goes, stage by stage (store timestamps against the
    /// benchmark's clock, same machine).
    pub stages: Stages,
}

/// The path of one message, cut at the timestamps the store keeps.
#[derive(Debug, Default, serde::Serialize)]
pub struct Stages {
    /// Accepted at the edge (Kafka ack) → stored by the inbound consumer (its transaction start).
    pub accepted_to_stored_ms: Summary,
    /// Stored → `message_visible` written (the ticket workflow's check; = `afc_ms`).
    pub stored_to_visible_ms: Summary,
    /// `message_visible` written → marked published by the outbox relay (after Kafka's ack and
    /// the batch's workflow signals).
    pub visible_to_published_ms: Summary,
    /// `message_visible` written → seen in the manager's stream (relay, Kafka, gateway).
    pub visible_to_stream_ms: Summary,
}

/// Offers `rate` messages/s for `duration`, round-robin over `clients`, then waits up to `drain`
/// for the accepted ones to become visible.
#[allow(clippy::too_many_arguments)]
pub async fn step(
    edge: &Arc<Edge>,
    clients: &[Arc<BenchClient>],
    clock: &Arc<Clock>,
    rate: f64,
    duration: Duration,
    drain: Duration,
    max_inflight: usize,
    counter: &AtomicU64,
) -> (StepFigures, Vec<String>) {
    let permits = Arc::new(Semaphore::new(max_inflight.max(1)));
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate.max(0.1)));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    let (mut offered, mut shed) = (0, 0);
    while started.elapsed() < duration {
        tick.tick().await;
        let n = counter.fetch_add(1, Ordering::Relaxed);
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            shed += 1;
            continue;
        };
        offered += 1;
        let c = clients[(n as usize) % clients.len()].clone();
        let (edge, clock) = (edge.clone(), clock.clone());
        tasks.spawn(async move {
            let _permit = permit;
            let t = Instant::now();
            let r = edge.send(&c, format!("bench message {n}")).await;
            let at = Instant::now();
            match r {
                Ok(id) => {
                    clock.accepted.lock().await.insert(id.clone(), at);
                    Ok((id, at - t))
                }
                Err(e) => Err(e),
            }
        });
    }
    let mut ids = Vec::new();
    let mut accept = Vec::new();
    let mut errors = 0;
    let mut first_error = None;
    while let Some(r) = tasks.join_next().await {
        match r {
            Ok(Ok((id, d))) => {
                ids.push(id);
                accept.push(d);
            }
            Ok(Err(e)) => {
                errors += 1;
                first_error.get_or_insert(e.to_string());
            }
            Err(e) => {
                errors += 1;
                first_error.get_or_insert(e.to_string());
            }
        }
    }
    let window = started.elapsed().as_secs_f64();
    if let Some(e) = first_error {
        eprintln!("bench: {errors} sends failed; first: {e}");
    }

    // Drain: wait for the accepted messages to show up in the managers' streams.
    let deadline = Instant::now() + drain;
    loop {
        let notified = clock.seen.notified();
        let visible = clock.visible.lock().await;
        let missing = ids.iter().filter(|id| !visible.contains_key(*id)).count();
        drop(visible);
        if missing == 0 || Instant::now() >= deadline {
            break;
        }
        let _ = tokio::time::timeout(Duration::from_millis(500), notified).await;
    }
    let accepted = clock.accepted.lock().await;
    let visible = clock.visible.lock().await;
    let latencies: Vec<Duration> = ids
        .iter()
        .filter_map(|id| {
            Some(
                visible
                    .get(id)?
                    .saturating_duration_since(*accepted.get(id)?),
            )
        })
        .collect();
    let figures = StepFigures {
        target_rate: rate,
        seconds: window,
        offered,
        accepted: ids.len(),
        send_errors: errors,
        shed,
        accepted_per_s: ids.len() as f64 / window.max(1e-3),
        visible: latencies.len(),
        not_visible_after_drain: ids.len() - latencies.len(),
        latency_ms: Summary::of(&latencies),
        accept_ms: Summary::of(&accept),
        ..StepFigures::default()
    };
    drop((accepted, visible));
    (figures, ids)
}

/// The stages of `ids` (see [`Stages`]).
pub async fn stages(pool: &PgPool, ids: &[String], clock: &Clock) -> anyhow::Result<Stages> {
    let uuids: Vec<uuid::Uuid> = ids.iter().filter_map(|i| i.parse().ok()).collect();
    let rows: Vec<(uuid::Uuid, f64, Option<f64>, Option<f64>)> = sqlx::query_as(
        "SELECT m.id, (extract(epoch FROM m.created_at) * 1000)::float8,
                (extract(epoch FROM e.created_at) * 1000)::float8,
                (extract(epoch FROM e.published_at) * 1000)::float8
         FROM messages m LEFT JOIN events e ON e.dedup_key = 'visible:' || m.id::text
         WHERE m.id = ANY($1)",
    )
    .bind(&uuids)
    .fetch_all(pool)
    .await?;
    let accepted = clock.accepted.lock().await;
    let visible = clock.visible.lock().await;
    let (mut to_stored, mut to_visible, mut to_published, mut to_stream) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (id, stored, visible_at, published_at) in rows {
        let key = id.to_string();
        if let Some(at) = accepted.get(&key) {
            to_stored.push(stored - clock.anchor.epoch_ms(*at));
        }
        let Some(v) = visible_at else { continue };
        to_visible.push(v - stored);
        if let Some(p) = published_at {
            to_published.push(p - v);
        }
        if let Some(seen) = visible.get(&key) {
            to_stream.push(clock.anchor.epoch_ms(*seen) - v);
        }
    }
    Ok(Stages {
        accepted_to_stored_ms: Summary::of_ms(&mut to_stored),
        stored_to_visible_ms: Summary::of_ms(&mut to_visible),
        visible_to_published_ms: Summary::of_ms(&mut to_published),
        visible_to_stream_ms: Summary::of_ms(&mut to_stream),
    })
}

/// Store → visible latencies of `ids`, from the store's own timestamps.
pub async fn afc_latency(pool: &PgPool, ids: &[String]) -> anyhow::Result<Summary> {
    let ids: Vec<uuid::Uuid> = ids.iter().filter_map(|i| i.parse().ok()).collect();
    let mut ms: Vec<f64> = sqlx::query_scalar(
        "SELECT (extract(epoch FROM e.created_at - m.created_at) * 1000)::float8
         FROM messages m JOIN events e ON e.dedup_key = 'visible:' || m.id::text
         WHERE m.id = ANY($1)",
    )
    .bind(&ids)
    .fetch_all(pool)
    .await?;
    Ok(Summary::of_ms(&mut ms))
}

pub async fn open_tickets(pool: &PgPool) -> anyhow::Result<i64> {
    Ok(
        sqlx::query_scalar("SELECT count(*) FROM tickets WHERE status <> 'closed'")
            .fetch_one(pool)
            .await?,
    )
}

/// Inbound consumer lag: records in the broker not yet handled by the workflow service (its
/// offsets live in PostgreSQL, not in a consumer group).
pub async fn kafka_lag(
    consumer: Arc<BaseConsumer>,
    pool: &PgPool,
    topic: &str,
) -> anyhow::Result<i64> {
    let stored: HashMap<i32, i64> = sqlx::query_as::<_, (i32, i64)>(
        "SELECT partition, next_offset FROM kafka_offsets WHERE topic = $1",
    )
    .bind(topic)
    .fetch_all(pool)
    .await?
    .into_iter()
    .collect();
    let topic_owned = topic.to_owned();
    let highs = tokio::task::spawn_blocking(move || {
        let partitions: Vec<i32> = consumer
            .fetch_metadata(Some(&topic_owned), Duration::from_secs(5))?
            .topics()
            .iter()
            .flat_map(|t| t.partitions().iter().map(|p| p.id()))
            .collect();
        partitions
            .into_iter()
            .map(|p| {
                consumer
                    .fetch_watermarks(&topic_owned, p, Duration::from_secs(5))
                    .map(|(_, high)| (p, high))
            })
            .collect::<Result<Vec<_>, _>>()
    })
    .await??;
    Ok(highs
        .into_iter()
        .map(|(p, high)| (high - stored.get(&p).copied().unwrap_or(0)).max(0))
        .sum())
}
