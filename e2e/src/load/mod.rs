//! A steady load of client messages across many tickets (half over web chat HTTP, half over gRPC
//! `ClientService/SendMessage`), with managers and clients following their streams and resuming
//! from their last cursor whenever a stream drops, and the checks that follow it: every accepted
//! message is visible exactly once to the manager of its ticket (or blocked exactly once), no
//! ticket has two managers, no manager is over capacity, and every stream delivered exactly the
//! events of its audience in the store, with no gap and no duplicate. The crash and fault tests
//! disturb the engine or its stack while it runs.

use crate::authed;
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
use tonic::transport::Channel;
use uuid::Uuid;

use crate::{Engine, Stack};

mod send;
mod streams;
mod verify;
use send::{Client, Edge, body_of, send_until_accepted};
use streams::{Delivered, Seen, follow_grpc, follow_ws};

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
            let subject = format!("c{c}-{run}");
            let token = stack.token(Role::Client, &subject, &format!("Client {c}"))?;
            let id = crate::web_client(&subject);
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
}
