//! A steady load of client messages across many tickets (half over web chat HTTP, half over gRPC
//! `ClientService/SendMessage`), with managers and clients following their streams and resuming
//! from their last cursor whenever a stream drops, and the checks that follow it: every accepted
//! message is visible exactly once to the manager of its ticket (or blocked exactly once), no
//! ticket has two managers, no manager is over capacity, and every stream delivered exactly the
//! events of its audience in the store, with no gap and no duplicate. The crash and fault tests
//! disturb the engine or its stack while it runs.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use futures::StreamExt;
use proto::v1::{
    self, client_service_client::ClientServiceClient, manager_service_client::ManagerServiceClient,
};
use serde_json::Value;
use sqlx::Connection;
use tickets::Role;
use tokio::sync::{Mutex, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tonic::Code;
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;
use uuid::Uuid;

use crate::{Engine, Stack};

/// The shape of the load.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    pub managers: usize,
    /// Open tickets a manager holds at most (the spec's `assignment.capacity`).
    pub capacity: usize,
    pub clients: usize,
    pub per_client: usize,
    /// Messages per second offered (steady, whatever the engine's state).
    pub rate: u64,
}

impl Default for LoadConfig {
    fn default() -> Self {
        Self {
            managers: 6,
            capacity: 10,
            clients: 40,
            per_client: 6,
            rate: 40,
        }
    }
}

impl LoadConfig {
    pub fn total(&self) -> usize {
        self.clients * self.per_client
    }

    /// Writes the spec the load expects (builtin AFC blocking card numbers, the capacity) into
    /// `dir`; returns the environment that points the engine at it.
    pub fn spec_env(&self, dir: &std::path::Path) -> anyhow::Result<(&'static str, String)> {
        std::fs::create_dir_all(dir)?;
        let spec = dir.join("workflows.yaml");
        std::fs::write(
            &spec,
            format!(
                "version: 1\nafc:\n  provider: builtin\n  rules:\n    - name: card\n      \
                 detector: card_number\nassignment:\n  capacity: {}\n",
                self.capacity
            ),
        )?;
        Ok(("INBOX_SPEC", spec.display().to_string()))
    }
}

/// How long a send or a stream may take to recover before the test fails.
pub const DEADLINE: Duration = Duration::from_secs(90);
/// How long the engine may take to work off its backlog after the load. Alone it needs seconds;
/// next to the other end-to-end tests on a busy 2-core machine, the inbound consumer has been seen
/// to fall ~120 messages behind at ~2 messages/s.
const CONVERGE: Duration = Duration::from_secs(180);
/// Pause between retries of a refused or failed send (pacing, not a wait for a condition).
const RETRY: Duration = Duration::from_millis(100);
/// How long one send may go unanswered before it counts as hung (the edge must answer, e.g. 503,
/// well within it, whatever is down behind it).
const HUNG: Duration = Duration::from_secs(15);
const CARD: &str = "4111 1111 1111 1111";

/// How the edge refused or failed sends, counted over the whole load.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Refusals {
    /// HTTP 503 with the JSON error body `{"error": {"code": "unavailable", ...}}`.
    pub http_unavailable: usize,
    /// Any other 5xx, or a 503 without that body.
    pub http_other_5xx: usize,
    /// HTTP requests unanswered within [`HUNG`].
    pub http_hung: usize,
    /// gRPC `UNAVAILABLE` (the gateway's answer when a dependency is down, or no gateway).
    pub grpc_unavailable: usize,
    /// gRPC calls unanswered within [`HUNG`].
    pub grpc_hung: usize,
}

fn authed<T>(token: &str, msg: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    if let Ok(v) = MetadataValue::try_from(format!("Bearer {token}")) {
        r.metadata_mut().insert("authorization", v);
    }
    r
}

/// The engine's client edge as it moves: each restart binds new ports.
#[derive(Clone)]
struct Edge {
    http: watch::Receiver<String>,
    grpc: watch::Receiver<String>,
    /// One gRPC channel per gateway address, shared by every sender and stream.
    channel: Arc<Mutex<Option<(String, Channel)>>>,
}

impl Edge {
    fn http_base(&self) -> String {
        format!(
            "http://{}",
            self.http.borrow().trim_start_matches("http://")
        )
    }

    async fn channel(&self) -> anyhow::Result<Channel> {
        let addr = self.grpc.borrow().clone();
        let mut cached = self.channel.lock().await;
        match &*cached {
            Some((a, ch)) if *a == addr => Ok(ch.clone()),
            _ => {
                let ch = Channel::from_shared(addr.clone())?
                    .connect_timeout(Duration::from_secs(2))
                    .connect_lazy();
                *cached = Some((addr, ch.clone()));
                Ok(ch)
            }
        }
    }
}

/// A client of the test: which edge it writes through and its messages.
struct Client {
    id: String,
    token: String,
    grpc: bool,
}

fn body_of(client: usize, n: usize) -> (String, bool) {
    // Every fourth client sends one card number mid-conversation; first messages always pass,
    // so every ticket queues for a manager.
    if client.is_multiple_of(4) && n == 3 {
        (format!("client {client} message {n}: my card {CARD}"), true)
    } else {
        (format!("client {client} message {n}"), false)
    }
}

/// Sends one message until the edge accepts it, retrying with the same idempotency key through
/// crashes and outages; returns the message id. Every refusal is counted in `refusals`.
async fn send_until_accepted(
    edge: &Edge,
    http: &reqwest::Client,
    c: &Client,
    body: &str,
    key: Uuid,
    refusals: &watch::Sender<Refusals>,
) -> anyhow::Result<String> {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if Instant::now() > deadline {
            bail!("{}: message {key} never accepted", c.id);
        }
        if c.grpc {
            let mut client = ClientServiceClient::new(edge.channel().await?);
            let mut req = authed(
                &c.token,
                v1::SendMessageRequest {
                    body: body.into(),
                    idempotency_key: key.to_string(),
                },
            );
            req.set_timeout(HUNG);
            match client.send_message(req).await {
                Ok(r) => return Ok(r.into_inner().message_id),
                Err(s) if s.code() == Code::Unavailable => {
                    refusals.send_modify(|r| r.grpc_unavailable += 1);
                }
                Err(s) if s.code() == Code::DeadlineExceeded => {
                    refusals.send_modify(|r| r.grpc_hung += 1);
                }
                // The gateway died mid-call.
                Err(s) if matches!(s.code(), Code::Unknown | Code::Internal | Code::Cancelled) => {}
                Err(s) => bail!("{}: SendMessage: {s}", c.id),
            }
        } else {
            let r = http
                .post(format!("{}/v1/messages", edge.http_base()))
                .bearer_auth(&c.token)
                .json(&serde_json::json!({"body": body, "client_message_id": key}))
                .timeout(HUNG)
                .send()
                .await;
            match r {
                Ok(resp) if resp.status().as_u16() == 202 => {
                    let v: Value = resp.json().await?;
                    return v["message_id"]
                        .as_str()
                        .map(str::to_owned)
                        .context("202 without message_id");
                }
                Ok(resp) if resp.status().as_u16() == 429 => {}
                Ok(resp) if resp.status().is_server_error() => {
                    let status = resp.status().as_u16();
                    let v: Value = resp.json().await.unwrap_or_default();
                    if status == 503 && v["error"]["code"] == "unavailable" {
                        refusals.send_modify(|r| r.http_unavailable += 1);
                    } else {
                        refusals.send_modify(|r| r.http_other_5xx += 1);
                    }
                }
                Ok(resp) => bail!("{}: {} {}", c.id, resp.status(), resp.text().await?),
                Err(e) if e.is_timeout() => refusals.send_modify(|r| r.http_hung += 1),
                // communication is down or died mid-request.
                Err(_) => {}
            }
        }
        tokio::time::sleep(RETRY).await;
    }
}

/// One delivered event: its cursor, kind and payload.
#[derive(Debug, Clone)]
struct Seen {
    cursor: i64,
    kind: String,
    ticket_id: String,
    message_id: String,
}

/// What a stream delivered, across all its reconnects.
#[derive(Debug, Default)]
struct Delivered {
    events: Vec<Seen>,
    reconnects: usize,
}

impl Delivered {
    /// Takes the next event; a cursor that does not grow is a duplicate or a reordering.
    fn take(&mut self, e: Seen, progress: &watch::Sender<i64>) -> anyhow::Result<()> {
        let last = self.events.last().map_or(0, |e| e.cursor);
        if e.cursor <= last {
            bail!("cursor {} delivered after {last}", e.cursor);
        }
        progress.send_replace(e.cursor);
        self.events.push(e);
        Ok(())
    }

    fn last(&self) -> i64 {
        self.events.last().map_or(0, |e| e.cursor)
    }
}

/// Follows a client's WebSocket, reconnecting with `after=<last event_id>` whenever it drops.
async fn follow_ws(
    edge: Edge,
    token: String,
    progress: watch::Sender<i64>,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<Delivered> {
    let mut out = Delivered::default();
    loop {
        if *stop.borrow() {
            return Ok(out);
        }
        let url = format!(
            "ws://{}/v1/ws?token={token}&after={}",
            edge.http.borrow().trim_start_matches("http://"),
            out.last()
        );
        let ws = match tokio_tungstenite::connect_async(url).await {
            Ok((ws, _)) => ws,
            Err(_) => {
                tokio::select! {
                    _ = stop.changed() => {}
                    _ = tokio::time::sleep(RETRY) => {}
                }
                continue;
            }
        };
        out.reconnects += 1;
        let (_, mut rx) = ws.split();
        loop {
            let frame = tokio::select! {
                _ = stop.changed() => return Ok(out),
                f = rx.next() => f,
            };
            let text = match frame {
                Some(Ok(WsMessage::Text(t))) => t,
                Some(Ok(WsMessage::Close(_))) | Some(Err(_)) | None => break,
                Some(Ok(_)) => continue,
            };
            let v: Value = serde_json::from_str(&text)?;
            let s = |k: &str| v[k].as_str().unwrap_or_default().to_owned();
            out.take(
                Seen {
                    cursor: v["event_id"].as_i64().context("frame without event_id")?,
                    kind: s("type"),
                    ticket_id: s("ticket_id"),
                    message_id: s("message_id"),
                },
                &progress,
            )?;
        }
    }
}

fn payload_str(e: &v1::Event, key: &str) -> String {
    match e
        .payload
        .as_ref()
        .and_then(|p| p.fields.get(key))
        .and_then(|v| v.kind.as_ref())
    {
        Some(prost_types::value::Kind::StringValue(s)) => s.clone(),
        _ => String::new(),
    }
}

/// Follows a gRPC `StreamEvents` (client or manager), resuming from the last cursor on any error.
async fn follow_grpc(
    edge: Edge,
    token: String,
    manager: bool,
    progress: watch::Sender<i64>,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<Delivered> {
    let mut out = Delivered::default();
    loop {
        if *stop.borrow() {
            return Ok(out);
        }
        let ch = edge.channel().await?;
        let req = authed(
            &token,
            v1::StreamEventsRequest {
                after_cursor: out.last(),
            },
        );
        let opened = if manager {
            ManagerServiceClient::new(ch).stream_events(req).await
        } else {
            ClientServiceClient::new(ch).stream_events(req).await
        };
        let mut stream = match opened {
            Ok(s) => s.into_inner(),
            Err(_) => {
                tokio::select! {
                    _ = stop.changed() => {}
                    _ = tokio::time::sleep(RETRY) => {}
                }
                continue;
            }
        };
        out.reconnects += 1;
        loop {
            let item = tokio::select! {
                _ = stop.changed() => return Ok(out),
                i = stream.next() => i,
            };
            match item {
                Some(Ok(e)) => {
                    let seen = Seen {
                        cursor: e.cursor,
                        kind: e.kind.clone(),
                        ticket_id: e.ticket_id.clone(),
                        message_id: payload_str(&e, "message_id"),
                    };
                    out.take(seen, &progress)?;
                }
                Some(Err(_)) | None => break,
            }
        }
    }
}

/// Waits (on PostgreSQL notifications, with a deadline) until `done` holds.
async fn converge<F>(database_url: &str, what: &str, mut done: F) -> anyhow::Result<()>
where
    F: AsyncFnMut(&mut sqlx::PgConnection) -> anyhow::Result<Option<String>>,
{
    let mut db = sqlx::PgConnection::connect(database_url).await?;
    let mut listener = sqlx::postgres::PgListener::connect(database_url).await?;
    listener.listen(tickets::store::EVENTS_CHANNEL).await?;
    let deadline = Instant::now() + CONVERGE;
    loop {
        let Some(missing) = done(&mut db).await? else {
            return Ok(());
        };
        // A notification, or a periodic re-check for state changes that notify nothing.
        match tokio::time::timeout_at(
            deadline.min(Instant::now() + Duration::from_secs(1)),
            listener.recv(),
        )
        .await
        {
            Ok(r) => {
                r?;
            }
            Err(_) if Instant::now() >= deadline => bail!("{what} not reached in time: {missing}"),
            Err(_) => {}
        }
    }
}

type Follower = (watch::Receiver<i64>, JoinHandle<anyhow::Result<Delivered>>);
type Sent = Vec<(usize, String, bool)>;

/// The load while it runs: managers and clients following their streams, and the sends.
pub struct Load {
    cfg: LoadConfig,
    edge: Edge,
    http_tx: watch::Sender<String>,
    grpc_tx: watch::Sender<String>,
    accepted: watch::Receiver<usize>,
    refusals: watch::Receiver<Refusals>,
    stop_tx: watch::Sender<bool>,
    /// Ends the offering early (see [`Load::stop_offering`]).
    offering_tx: watch::Sender<bool>,
    /// Manager id, token and stream.
    managers: Vec<(String, String, Follower)>,
    clients: Vec<(Arc<Client>, Follower)>,
    sends: JoinHandle<anyhow::Result<Sent>>,
}

/// What the streams went through, for the test to judge against what it disturbed.
#[derive(Debug, Clone, Copy)]
pub struct Report {
    /// The fewest connections any WebSocket client stream needed.
    pub ws_connections_min: usize,
    /// The fewest connections any gRPC stream (client or manager) needed.
    pub grpc_connections_min: usize,
    pub refusals: Refusals,
}

impl Load {
    /// Makes the managers ready up to capacity and follows their streams, then starts the clients'
    /// streams and the sends: one message every 1/rate s, round-robin over the clients, each retried
    /// until accepted. Even clients write over HTTP and follow the WebSocket, odd ones use gRPC.
    pub async fn start(stack: &Stack, engine: &Engine, cfg: LoadConfig) -> anyhow::Result<Self> {
        let (http_tx, http_rx) = watch::channel(engine.http.clone());
        let (grpc_tx, grpc_rx) = watch::channel(engine.grpc.clone());
        let edge = Edge {
            http: http_rx,
            grpc: grpc_rx,
            channel: Arc::default(),
        };
        let run = Uuid::new_v4().simple().to_string();
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut managers = Vec::new();
        for i in 0..cfg.managers {
            let id = format!("m{i}-{run}");
            let token = stack.token(Role::Manager, &id, &format!("Manager {i}"))?;
            let mut m = ManagerServiceClient::new(edge.channel().await?);
            for _ in 0..cfg.capacity {
                m.set_ready(authed(&token, v1::SetReadyRequest {})).await?;
            }
            let (ptx, prx) = watch::channel(0);
            let task = tokio::spawn(follow_grpc(
                edge.clone(),
                token.clone(),
                true,
                ptx,
                stop_rx.clone(),
            ));
            managers.push((id, token, (prx, task)));
        }
        let mut clients = Vec::new();
        for c in 0..cfg.clients {
            let id = format!("c{c}-{run}");
            let token = stack.token(Role::Client, &id, &format!("Client {c}"))?;
            let grpc = c % 2 == 1;
            let (ptx, prx) = watch::channel(0);
            let task = if grpc {
                tokio::spawn(follow_grpc(
                    edge.clone(),
                    token.clone(),
                    false,
                    ptx,
                    stop_rx.clone(),
                ))
            } else {
                tokio::spawn(follow_ws(edge.clone(), token.clone(), ptx, stop_rx.clone()))
            };
            clients.push((Arc::new(Client { id, token, grpc }), (prx, task)));
        }

        let (count_tx, accepted) = watch::channel(0usize);
        let (refusals_tx, refusals) = watch::channel(Refusals::default());
        let (offering_tx, mut offering_rx) = watch::channel(true);
        let http = reqwest::Client::builder().build()?;
        let sends = {
            let edge = edge.clone();
            let counter = Arc::new(AtomicUsize::new(0));
            let (count_tx, refusals_tx) = (Arc::new(count_tx), Arc::new(refusals_tx));
            let senders: Vec<Arc<Client>> = clients.iter().map(|(c, _)| c.clone()).collect();
            let (per_client, rate) = (cfg.per_client, cfg.rate);
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_millis(1000 / rate.max(1)));
                let mut sends = Vec::new();
                'offer: for n in 0..per_client {
                    for (ci, c) in senders.iter().enumerate() {
                        tokio::select! {
                            _ = tick.tick() => {}
                            _ = offering_rx.wait_for(|on| !on) => break 'offer,
                        }
                        let (edge, http, c) = (edge.clone(), http.clone(), c.clone());
                        let (counter, count_tx) = (counter.clone(), count_tx.clone());
                        let refusals_tx = refusals_tx.clone();
                        sends.push(tokio::spawn(async move {
                            let (body, blocked) = body_of(ci, n);
                            let key = Uuid::new_v4();
                            let id =
                                send_until_accepted(&edge, &http, &c, &body, key, &refusals_tx)
                                    .await?;
                            let total = counter.fetch_add(1, Ordering::Relaxed) + 1;
                            count_tx.send_replace(total);
                            anyhow::Ok((ci, id, blocked))
                        }));
                    }
                }
                let mut out = Vec::new();
                for s in sends {
                    out.push(s.await??);
                }
                anyhow::Ok(out)
            })
        };
        Ok(Self {
            cfg,
            edge,
            http_tx,
            grpc_tx,
            accepted,
            refusals,
            stop_tx,
            offering_tx,
            managers,
            clients,
            sends,
        })
    }

    /// Offers no more messages (the ones offered are still retried until accepted). Without it the
    /// load ends after `per_client` messages from each client.
    pub fn stop_offering(&self) {
        self.offering_tx.send_replace(false);
    }

    /// Messages accepted so far.
    pub fn accepted(&self) -> usize {
        *self.accepted.borrow()
    }

    /// Waits (with [`DEADLINE`]) until `n` messages were accepted.
    pub async fn wait_accepted(&mut self, n: usize) -> anyhow::Result<()> {
        let ended = tokio::time::timeout(DEADLINE, self.accepted.wait_for(|c| *c >= n))
            .await
            .with_context(|| format!("{n} messages not accepted within {DEADLINE:?}"))?
            .is_err();
        if ended {
            bail!(
                "the load ended at {} accepted messages, before {n}",
                self.accepted()
            );
        }
        Ok(())
    }

    /// The refusals so far.
    pub fn refusals(&self) -> Refusals {
        *self.refusals.borrow()
    }

    /// Waits (with [`DEADLINE`]) until the refusals satisfy `done`; returns them.
    pub async fn wait_refusals(
        &mut self,
        what: &str,
        done: impl FnMut(&Refusals) -> bool,
    ) -> anyhow::Result<Refusals> {
        let r = tokio::time::timeout(DEADLINE, self.refusals.wait_for(done))
            .await
            .with_context(|| format!("{what}: not seen within {DEADLINE:?}"))?
            .map_err(|_| anyhow::anyhow!("{what}: not seen before the load ended"))?;
        Ok(*r)
    }

    /// The engine's edge moved (a service restarted on new ports): senders and streams follow.
    pub fn follow(&self, engine: &Engine) {
        self.http_tx.send_replace(engine.http.clone());
        self.grpc_tx.send_replace(engine.grpc.clone());
    }

    /// Waits for the load to be accepted and worked off, stops the streams once each has caught up
    /// with the store, and checks every invariant; returns what the streams went through.
    pub async fn finish(self, engine: &Engine) -> anyhow::Result<Report> {
        let Self {
            cfg,
            edge,
            refusals,
            stop_tx,
            mut managers,
            mut clients,
            sends,
            ..
        } = self;
        let sent = tokio::time::timeout(DEADLINE * 2, sends).await???;
        let total = sent.len();
        assert!(
            total >= cfg.clients,
            "every client sent at least one message ({total} sent)"
        );

        // Every accepted message is checked (passed or blocked) and every ticket assigned.
        let ids: Vec<Uuid> = sent
            .iter()
            .map(|(_, id, _)| Uuid::parse_str(id))
            .collect::<Result<_, _>>()?;
        let clients_n = cfg.clients as i64;
        converge(&engine.database_url, "every message checked, every ticket assigned", async |db| {
            let checked: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM messages WHERE id = ANY($1) AND afc_status IN ('passed', 'blocked')",
            )
            .bind(&ids)
            .fetch_one(&mut *db)
            .await?;
            let assigned: i64 =
                sqlx::query_scalar("SELECT count(*) FROM tickets WHERE status = 'assigned'")
                    .fetch_one(&mut *db)
                    .await?;
            if checked == total as i64 && assigned == clients_n {
                return Ok(None);
            }
            // Where the stragglers are: not stored at all, or stored and never checked (by client).
            let stored: Vec<(String, String)> = sqlx::query_as(
                "SELECT client_id, afc_status FROM messages
                 WHERE id = ANY($1) AND afc_status NOT IN ('passed', 'blocked')",
            )
            .bind(&ids)
            .fetch_all(&mut *db)
            .await?;
            let missing = total - stored.len() - checked as usize;
            Ok(Some(format!(
                "{checked}/{total} checked, {assigned}/{clients_n} assigned; {missing} not stored, \
                 unchecked: {stored:?}"
            )))
        })
        .await?;

        // Every stream catches up with its audience's newest event in the store, then stops.
        let mut db = sqlx::PgConnection::connect(&engine.database_url).await?;
        let mut expected: HashMap<String, Vec<(i64, String)>> = HashMap::new();
        for (c, _) in &clients {
            let rows: Vec<(i64, String)> = sqlx::query_as(
                "SELECT seq, kind FROM events WHERE client_id = $1 AND client_visible AND seq IS NOT NULL
                 ORDER BY seq",
            )
            .bind(&c.id)
            .fetch_all(&mut db)
            .await?;
            expected.insert(c.id.clone(), rows);
        }
        for (m, _, _) in &managers {
            let rows: Vec<(i64, String)> =
                sqlx::query_as(
                    "SELECT seq, kind FROM events WHERE manager_id = $1 AND seq IS NOT NULL ORDER BY seq",
                )
                    .bind(m)
                    .fetch_all(&mut db)
                    .await?;
            expected.insert(m.clone(), rows);
        }
        let progress = clients
            .iter()
            .map(|(c, (p, _))| (c.id.clone(), p.clone()))
            .chain(managers.iter().map(|(m, _, (p, _))| (m.clone(), p.clone())));
        for (who, mut p) in progress {
            let newest = expected[&who].last().map_or(0, |e| e.0);
            tokio::time::timeout(DEADLINE, p.wait_for(|c| *c >= newest))
                .await
                .with_context(|| format!("{who}'s stream never reached cursor {newest}"))??;
        }
        stop_tx.send_replace(true);

        // Streams: exactly the audience's events, in order, across every reconnect.
        let mut delivered: HashMap<String, Delivered> = HashMap::new();
        for (c, (_, task)) in clients.iter_mut() {
            delivered.insert(c.id.clone(), task.await??);
        }
        for (m, _, (_, task)) in managers.iter_mut() {
            delivered.insert(m.clone(), task.await??);
        }
        for (who, want) in &expected {
            let got: Vec<(i64, String)> = delivered[who]
                .events
                .iter()
                .map(|e| (e.cursor, e.kind.clone()))
                .collect();
            assert_eq!(&got, want, "{who}: stream differs from the store");
        }
        let ws_connections_min: usize = clients
            .iter()
            .filter(|(c, _)| !c.grpc)
            .map(|(c, _)| delivered[&c.id].reconnects)
            .min()
            .unwrap_or(0);
        let grpc_connections_min: usize = clients
            .iter()
            .filter(|(c, _)| c.grpc)
            .map(|(c, _)| delivered[&c.id].reconnects)
            .chain(managers.iter().map(|(m, _, _)| delivered[m].reconnects))
            .min()
            .unwrap_or(0);

        // Each client's messages: blocked ones told to the client once; the rest passed.
        let mut blocked_told: HashMap<String, usize> = HashMap::new();
        for (c, _) in &clients {
            for e in &delivered[&c.id].events {
                if e.kind == "message_blocked" {
                    *blocked_told.entry(e.message_id.clone()).or_default() += 1;
                }
            }
        }
        let statuses: Vec<(Uuid, String, Option<Uuid>, String)> = sqlx::query_as(
            "SELECT id, afc_status, ticket_id, client_id FROM messages WHERE id = ANY($1)",
        )
        .bind(&ids)
        .fetch_all(&mut db)
        .await?;
        assert_eq!(statuses.len(), total, "every accepted message stored once");
        let status: HashMap<Uuid, (String, Option<Uuid>, String)> = statuses
            .into_iter()
            .map(|(id, s, t, c)| (id, (s, t, c)))
            .collect();
        let mut passed_by_client: HashMap<String, HashSet<String>> = HashMap::new();
        for ((ci, id, blocked), uuid) in sent.iter().zip(&ids) {
            let (s, _, client_id) = &status[uuid];
            let c = &clients[*ci].0;
            assert_eq!(client_id, &c.id, "message {id} belongs to its sender");
            if *blocked {
                assert_eq!(s, "blocked", "message {id}");
                assert_eq!(blocked_told.get(id), Some(&1), "message {id} blocked once");
            } else {
                assert_eq!(s, "passed", "message {id}");
                assert!(!blocked_told.contains_key(id));
                passed_by_client
                    .entry(c.id.clone())
                    .or_default()
                    .insert(id.clone());
            }
        }

        // Managers: each ticket assigned once, to one manager within capacity, and its passed
        // messages visible to that manager exactly once (ListMessages), blocked ones never.
        let mut owner: BTreeMap<String, String> = BTreeMap::new();
        let mut visible_to: HashMap<String, Vec<String>> = HashMap::new();
        for (m, token, _) in &managers {
            let assigned: Vec<&Seen> = delivered[m]
                .events
                .iter()
                .filter(|e| e.kind == "ticket_assigned")
                .collect();
            assert!(assigned.len() <= cfg.capacity, "{m} over capacity");
            for e in &assigned {
                if let Some(other) = owner.insert(e.ticket_id.clone(), m.clone()) {
                    bail!("ticket {} assigned to {other} and {m}", e.ticket_id);
                }
            }
            let mut api = ManagerServiceClient::new(edge.channel().await?);
            let tickets = api
                .list_tickets(authed(token, v1::ListTicketsRequest::default()))
                .await?
                .into_inner()
                .tickets;
            assert!(tickets.len() <= cfg.capacity, "{m} over capacity");
            let mut listed: Vec<String> = tickets.iter().map(|t| t.id.clone()).collect();
            let mut streamed: Vec<String> = assigned.iter().map(|e| e.ticket_id.clone()).collect();
            listed.sort();
            streamed.sort();
            assert_eq!(listed, streamed, "{m}: stream and ListTickets agree");
            for t in &tickets {
                let mut page_token = String::new();
                loop {
                    let page = api
                        .list_messages(authed(
                            token,
                            v1::ListMessagesRequest {
                                ticket_id: t.id.clone(),
                                page_size: 0,
                                page_token: page_token.clone(),
                            },
                        ))
                        .await?
                        .into_inner();
                    for msg in page.messages {
                        if msg.author == v1::Author::Client as i32 {
                            assert_eq!(msg.ticket_id, t.id);
                            visible_to
                                .entry(msg.id)
                                .or_default()
                                .push(t.client_id.clone());
                        }
                    }
                    if !page.has_more {
                        break;
                    }
                    page_token = page.next_page_token;
                }
            }
            // Live messages (after assignment) arrive once each, on this manager's own tickets.
            let mut live = HashSet::new();
            for e in delivered[m]
                .events
                .iter()
                .filter(|e| e.kind == "message_visible")
            {
                assert!(
                    live.insert(e.message_id.clone()),
                    "{m}: {} twice",
                    e.message_id
                );
                assert_eq!(owner.get(&e.ticket_id), Some(m), "{m}: foreign ticket");
            }
        }
        assert_eq!(
            owner.len(),
            cfg.clients,
            "every ticket assigned exactly once"
        );
        let mut seen_total = 0;
        for (client, passed) in &passed_by_client {
            for id in passed {
                assert_eq!(
                    visible_to.get(id).map(Vec::as_slice),
                    Some(std::slice::from_ref(client)),
                    "message {id} visible exactly once, on its client's ticket"
                );
                seen_total += 1;
            }
        }
        assert_eq!(
            visible_to.len(),
            seen_total,
            "managers see no message that was not accepted as passed"
        );

        // The store agrees: one manager per ticket, nobody over capacity, assigned once.
        let twice: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM (SELECT ticket_id FROM events WHERE kind = 'ticket_assigned'
             GROUP BY ticket_id HAVING count(*) <> 1) x",
        )
        .fetch_one(&mut db)
        .await?;
        assert_eq!(twice, 0, "every ticket assigned exactly once");
        let over: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM (SELECT manager_id FROM tickets WHERE status = 'assigned'
             GROUP BY manager_id HAVING count(*) > $1) x",
        )
        .bind(cfg.capacity as i64)
        .fetch_one(&mut db)
        .await?;
        assert_eq!(over, 0, "no manager over capacity");
        let tickets: i64 = sqlx::query_scalar("SELECT count(*) FROM tickets")
            .fetch_one(&mut db)
            .await?;
        assert_eq!(tickets, clients_n, "one ticket per client");
        let refusals = *refusals.borrow();
        Ok(Report {
            ws_connections_min,
            grpc_connections_min,
            refusals,
        })
    }
}
