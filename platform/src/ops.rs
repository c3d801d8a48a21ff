//! What a platform team probes and scrapes, on a listener of each service's own (never the public
//! client API): `/livez` (the process answers), `/readyz` (its dependencies answer and none of its
//! background loops is restarting), `/metrics` (Prometheus text). And the supervisor of those
//! background loops: a loop that panics or stops on its own is logged, counted
//! (`inbox_loop_restarts_total`) and restarted with backoff, and the service is not ready meanwhile.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use tokio_util::sync::CancellationToken;

use crate::settings::{Kind, Setting};

/// One probe of a dependency: `Err` says what is wrong.
pub type Probe =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Send + Sync>;

/// A probe from an async closure: `probe_fn(move || { let db = db.clone(); async move { .. } })`.
pub fn probe_fn<F, Fut, E>(f: F) -> Probe
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
    E: std::fmt::Display,
{
    Arc::new(move || {
        let fut = f();
        Box::pin(async move { fut.await.map_err(|e| e.to_string()) })
    })
}

/// A probe calling `check` on a clone of `value`, e.g. `probe_of(&store, PgStore::ping_owned)`.
pub fn probe_of<T, Fut, E>(value: &T, check: fn(T) -> Fut) -> Probe
where
    T: Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
    E: std::fmt::Display,
{
    let value = value.clone();
    probe_fn(move || check(value.clone()))
}

/// How long one readiness probe may take before it counts as a failure.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LoopState {
    Running,
    Restarting,
}

/// The readiness of one service: its dependency probes and supervised loops.
#[derive(Default)]
pub struct Health {
    probes: Mutex<Vec<(&'static str, Probe)>>,
    loops: Mutex<BTreeMap<&'static str, LoopState>>,
    draining: AtomicBool,
}

impl Health {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// The readiness every service shares: the database answers (`database`, e.g.
    /// `probe_fn(move || store.clone().ping_owned())` or
    /// [`probe_of`]), and the brokers give the metadata of
    /// `topic`.
    pub fn of_database_and_kafka(
        database: Probe,
        kafka: &crate::kafka::KafkaSettings,
        topic: &str,
    ) -> Result<Arc<Self>, crate::kafka::KafkaError> {
        let health = Self::new();
        health.probe("postgres", database);
        health.probe("kafka", crate::kafka::probe(kafka, topic)?);
        Ok(health)
    }

    /// Adds a dependency that must answer for the service to be ready.
    pub fn probe(&self, name: &'static str, probe: Probe) {
        self.lock_probes().push((name, probe));
    }

    /// From now on the service is not ready (shutdown started: load balancers stop sending).
    pub fn drain(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    fn lock_probes(&self) -> std::sync::MutexGuard<'_, Vec<(&'static str, Probe)>> {
        self.probes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn lock_loops(&self) -> std::sync::MutexGuard<'_, BTreeMap<&'static str, LoopState>> {
        self.loops
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn set_loop(&self, name: &'static str, state: LoopState) {
        self.lock_loops().insert(name, state);
    }

    /// Every failing check, by name (empty: ready). Probes run concurrently, each bounded.
    pub async fn failures(&self) -> Vec<(String, String)> {
        let mut failed = Vec::new();
        if self.draining.load(Ordering::SeqCst) {
            failed.push(("shutdown".to_owned(), "draining".to_owned()));
        }
        for (name, state) in self.lock_loops().iter() {
            if *state == LoopState::Restarting {
                failed.push(((*name).to_owned(), "restarting".to_owned()));
            }
        }
        let probes: Vec<(&'static str, Probe)> = self.lock_probes().clone();
        let results =
            futures_util::future::join_all(probes.into_iter().map(|(name, p)| async move {
                let r = match tokio::time::timeout(PROBE_TIMEOUT, p()).await {
                    Ok(r) => r,
                    Err(_) => Err(format!("no answer within {PROBE_TIMEOUT:?}")),
                };
                (name, r)
            }))
            .await;
        for (name, r) in results {
            metrics::gauge!("inbox_dependency_up", "dependency" => name).set(if r.is_ok() {
                1.0
            } else {
                0.0
            });
            if let Err(e) = r {
                failed.push((name.to_owned(), e));
            }
        }
        failed
    }
}

/// Installs the Prometheus recorder for this process (once; later calls reuse it).
pub fn metrics_handle() -> metrics_exporter_prometheus::PrometheusHandle {
    static HANDLE: std::sync::OnceLock<metrics_exporter_prometheus::PrometheusHandle> =
        std::sync::OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = metrics_exporter_prometheus::PrometheusBuilder::new()
                .set_buckets(&[
                    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                    300.0, 900.0, 3600.0,
                ])
                .unwrap_or_else(|_| metrics_exporter_prometheus::PrometheusBuilder::new())
                .build_recorder();
            let handle = recorder.handle();
            // Another recorder may already be installed (tests linking two services): then
            // this handle renders nothing, which only a test could notice.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

/// One more on `gauge` while this value lives: a task holds it for its whole run, so the gauge
/// comes down however the task ends (a return, a panic, the runtime shutting down).
pub struct GaugeGuard(metrics::Gauge);

impl GaugeGuard {
    pub fn hold(gauge: metrics::Gauge) -> Self {
        gauge.increment(1.0);
        Self(gauge)
    }
}

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}

/// Binds the ops listener at `addr` and serves it until `stop`; returns the bound address.
pub async fn serve(
    addr: &str,
    health: Arc<Health>,
    stop: CancellationToken,
) -> std::io::Result<SocketAddr> {
    let handle = metrics_handle();
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let router = axum::Router::new()
        .route("/livez", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(move || {
                let health = health.clone();
                async move {
                    let failed = health.failures().await;
                    if failed.is_empty() {
                        (StatusCode::OK, "ready\n".to_owned()).into_response()
                    } else {
                        let text: String = failed
                            .iter()
                            .map(|(name, why)| format!("{name}: {why}\n"))
                            .collect();
                        (StatusCode::SERVICE_UNAVAILABLE, text).into_response()
                    }
                }
            }),
        )
        .route(
            "/metrics",
            get(move || {
                let handle = handle.clone();
                async move { handle.render() }
            }),
        );
    tracing::info!(addr = %bound, "ops listening on http://{bound} (/livez /readyz /metrics)");
    tokio::spawn(async move {
        let _ = axum::serve(listener, router)
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await;
    });
    Ok(bound)
}

/// Backoff between restarts of a loop: 1 s, doubling, at most this.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Runs the loop `make()` returns until `shutdown`. A panic, or a return before shutdown, is
/// logged and counted, marks the service not ready, and the loop starts again after a backoff
/// (reset once a run lasted a minute).
pub fn supervise<F, Fut>(
    health: &Arc<Health>,
    name: &'static str,
    shutdown: CancellationToken,
    make: F,
) -> tokio::task::JoinHandle<()>
where
    F: Fn() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let health = health.clone();
    health.set_loop(name, LoopState::Running);
    tokio::spawn(async move {
        let mut backoff = Duration::from_secs(1);
        loop {
            let started = tokio::time::Instant::now();
            let outcome = tokio::spawn(make()).await;
            if shutdown.is_cancelled() {
                return;
            }
            match outcome {
                Err(e) if e.is_panic() => {
                    tracing::error!(task = name, error = %e, "background loop panicked; restarting")
                }
                _ => tracing::error!(
                    task = name,
                    "background loop stopped on its own; restarting"
                ),
            }
            metrics::counter!("inbox_loop_restarts_total", "loop" => name).increment(1);
            health.set_loop(name, LoopState::Restarting);
            if started.elapsed() > Duration::from_secs(60) {
                backoff = Duration::from_secs(1);
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
            health.set_loop(name, LoopState::Running);
        }
    })
}

/// The ops listener of one service.
pub const fn ops_addr_setting(name: &'static str, default: &'static str) -> Setting {
    Setting::new(
        name,
        Kind::Addr,
        default,
        "ops listener: `/livez`, `/readyz`, `/metrics` (keep it off the public network)",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panicking_loop_is_restarted_and_the_service_is_not_ready_meanwhile() {
        let health = Health::new();
        let stop = CancellationToken::new();
        let runs = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let r = runs.clone();
        let task = supervise(&health, "flaky", stop.clone(), move || {
            let r = r.clone();
            let tx = tx.clone();
            async move {
                let n = r.fetch_add(1, Ordering::SeqCst);
                let _ = tx.send(n);
                if n == 0 {
                    panic!("first run fails");
                }
                std::future::pending::<()>().await;
            }
        });
        assert_eq!(rx.recv().await, Some(0));
        // Between the panic and the restart the loop is "restarting": not ready.
        let mut saw_not_ready = false;
        for _ in 0..200 {
            if health.failures().await.iter().any(|(n, _)| n == "flaky") {
                saw_not_ready = true;
                break;
            }
            tokio::task::yield_now().await;
        }
        assert!(
            saw_not_ready,
            "a restarting loop must make the service not ready"
        );
        assert_eq!(rx.recv().await, Some(1), "the loop runs again");
        assert!(
            health.failures().await.is_empty(),
            "ready once it runs again"
        );
        stop.cancel();
        task.abort();
    }

    #[tokio::test]
    async fn a_failing_or_silent_probe_makes_the_service_not_ready() {
        let health = Health::new();
        health.probe("ok", Arc::new(|| Box::pin(async { Ok(()) })));
        assert!(health.failures().await.is_empty());
        health.probe(
            "db",
            Arc::new(|| Box::pin(async { Err("refused".to_owned()) })),
        );
        let failed = health.failures().await;
        assert_eq!(failed, vec![("db".to_owned(), "refused".to_owned())]);
        health.drain();
        assert!(health.failures().await.iter().any(|(n, _)| n == "shutdown"));
    }
}
