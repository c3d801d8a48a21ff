//! The gateway: the tonic gRPC API over ticket and chat state (package `inbox.v1`) for managers'
//! consoles and other gRPC clients, with the standard health service and server reflection.
//! Reads go through the store's visibility rules; manager actions are store transactions whose
//! lifecycle events reach the ticket workflows through the outbox (the gateway never calls
//! Temporal).

pub mod admin;
pub mod caller;
pub mod client;
pub mod console;
pub mod convert;
pub mod manager;
pub mod report_csv;
pub mod status;
pub mod stream;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use platform::settings::{Common, Env, Kind, Refusals, Setting, SettingError, common};
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;

/// Largest request message the API decodes (a reply or note body is bounded far below this).
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;

/// Largest request the services that take uploads decode: a file of the largest size allowed,
/// with room for its name and type.
pub fn max_upload_request_bytes(files: &edge::files::Files) -> usize {
    usize::try_from(files.limits.max_bytes)
        .unwrap_or(usize::MAX)
        .saturating_add(MAX_REQUEST_BYTES)
}
/// Streams one HTTP/2 connection may hold open at once.
pub const MAX_STREAMS_PER_CONNECTION: u32 = 64;

pub static GRPC_ADDR: Setting = Setting::new(
    "INBOX_GRPC_ADDR",
    Kind::Addr,
    "127.0.0.1:15051",
    "`gateway`: gRPC listener (port 0: any free port)",
);

pub static CONSOLE_ADDR: Setting = Setting::new(
    "INBOX_CONSOLE_ADDR",
    Kind::Addr,
    "127.0.0.1:15053",
    "`gateway`: the web console and gRPC-Web listener (HTTP/1.1; port 0: any free port)",
);

pub static CONSOLE_OIDC_CLIENT_ID: Setting = Setting::optional(
    "INBOX_CONSOLE_OIDC_CLIENT_ID",
    Kind::Text,
    "the identity provider's client id of the web console (a public client, authorization code + PKCE, redirect URI = the console's origin + `/`); with INBOX_JWKS_URL the console signs in there",
);

pub static OPS_ADDR: Setting =
    platform::ops::ops_addr_setting("INBOX_GATEWAY_OPS_ADDR", "127.0.0.1:15052");

pub static READY_LAPSE_SECS: Setting = Setting::new(
    "INBOX_READY_LAPSE_SECS",
    Kind::Int,
    "300",
    "a manager's ready slots lapse after this long with no console stream open and no SetReady (0: never)",
);

/// Every setting of the gateway, in `--print-config` order.
pub fn declared() -> Vec<&'static [&'static Setting]> {
    static OWN: &[&Setting] = &[
        &GRPC_ADDR,
        &CONSOLE_ADDR,
        &CONSOLE_OIDC_CLIENT_ID,
        &OPS_ADDR,
        &spec::SPEC_FILE,
        &READY_LAPSE_SECS,
    ];
    vec![
        common::ALL,
        platform::telemetry::SETTINGS,
        OWN,
        edge::SETTINGS,
    ]
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub common: Common,
    pub grpc_addr: String,
    pub console_addr: String,
    /// The console's files, CORS, the request-head timeout of the console listener.
    pub browser: edge::web::WebSettings,
    /// Dev profile with a shared-secret verifier: the console's dev login issues tokens.
    pub dev_tokens: Option<console::DevTokens>,
    /// How the console signs in (its `/config.json`).
    pub console_login: console::Login,
    pub ops_addr: String,
    pub spec_path: std::path::PathBuf,
    /// The per-caller budget of `ClientService` calls (the web chat's own) and of manager
    /// actions.
    pub rate_limit: edge::ratelimit::RateLimit,
    pub streams: edge::stream::StreamConfig,
    /// Attachments: the object store and the limits of managers' (and gRPC clients') files.
    pub files: edge::files::Files,
    /// Ready slots lapse after this long without presence; None: never.
    pub ready_lapse: Option<std::time::Duration>,
}

impl Settings {
    pub fn from_env(env: &Env) -> Result<Self, SettingError> {
        let common = Common::from_env(env)?;
        let dev_tokens = match &common.auth {
            platform::settings::AuthSettings::Hs256 { secret, issuer } if !env.is_production() => {
                use secrecy::ExposeSecret as _;
                Some(console::DevTokens {
                    secret: secret.expose_secret().as_bytes().to_vec(),
                    issuer: issuer.clone().unwrap_or_default(),
                })
            }
            _ => None,
        };
        let console_login = console::Login::of(
            &common.auth,
            dev_tokens.is_some(),
            env.opt(&CONSOLE_OIDC_CLIENT_ID),
        );
        Ok(Self {
            common,
            grpc_addr: env.text(&GRPC_ADDR),
            console_addr: env.text(&CONSOLE_ADDR),
            browser: edge::web::WebSettings::from_env(env)?,
            console_login,
            dev_tokens,
            ops_addr: env.text(&OPS_ADDR),
            spec_path: env.text(&spec::SPEC_FILE).into(),
            rate_limit: edge::ratelimit::RateLimit::from_env(env)?,
            streams: edge::stream::StreamConfig::from_env(env)?,
            files: edge::files::Files::from_env(env)?,
            ready_lapse: match env.parse::<u64>(&READY_LAPSE_SECS)? {
                0 => None,
                secs => Some(std::time::Duration::from_secs(secs)),
            },
        })
    }

    pub fn refusals(&self, env: &Env) -> Refusals {
        let mut r = Refusals::new();
        self.common.refusals(&mut r);
        platform::telemetry::refusals(env, &mut r);
        r
    }
}

pub struct Application {
    listener: TcpListener,
    console: TcpListener,
    console_addr: SocketAddr,
    browser: edge::web::WebSettings,
    dev_tokens: Option<console::DevTokens>,
    console_login: console::Login,
    managers: manager::Managers,
    clients: client::Clients,
    admins: admin::Admins,
    streams: edge::stream::Streams,
    addr: SocketAddr,
    ops_addr: SocketAddr,
    health: Arc<platform::ops::Health>,
    ready_lapse: Option<std::time::Duration>,
}

/// Keeps the presence of the managers whose consoles have a stream here, and lapses the ready
/// slots of those absent longer than `lapse` (every gateway does both; the lapse is idempotent).
async fn presence(
    store: tickets::PgStore,
    hub: Arc<edge::stream::Hub>,
    lapse: std::time::Duration,
    stop: CancellationToken,
) {
    // Often enough that a present manager is refreshed several times within `lapse`.
    let every = (lapse / 3).clamp(
        std::time::Duration::from_millis(200),
        std::time::Duration::from_secs(30),
    );
    loop {
        if let Err(e) = store.touch_managers(&hub.present_managers()).await {
            tracing::warn!(error = %e, "manager presence not recorded");
        }
        match store.lapse_absent_ready(lapse).await {
            Ok(lapsed) => {
                for id in &lapsed {
                    tracing::info!(manager_id = %id, "ready slots lapsed: no console for {lapse:?}");
                }
                metrics::counter!("inbox_ready_lapsed_total").increment(lapsed.len() as u64);
            }
            Err(e) => tracing::warn!(error = %e, "ready slots not lapsed"),
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}

impl Application {
    pub async fn build(settings: Settings, shutdown: CancellationToken) -> anyhow::Result<Self> {
        let spec = spec::Spec::load(&settings.spec_path)?;
        let db = &settings.common.database;
        let store = tickets::PgStore::open("gateway", &db.url, db.password(), db.max_connections)
            .await
            .context("connecting to PostgreSQL")?;
        // The spec in force bounds every manager now, not only at their next `SetReady`.
        let rerouted = store
            .apply_routings(|id| {
                let p = spec.manager_policy(id);
                tickets::Routing {
                    capacity: p.capacity,
                    queues: p.queues,
                }
            })
            .await
            .context("applying the spec's capacities")?;
        if rerouted > 0 {
            tracing::info!(
                managers = rerouted,
                "capacities and queues updated from the spec"
            );
        }
        let topics = settings.common.topics();
        platform::kafka::ensure_topics(&settings.common.kafka, &topics.all())
            .await
            .context("creating Kafka topics")?;
        let verifier = edge::auth::Verifier::from_settings(&settings.common.auth)?;
        verifier.start(shutdown.clone()).await;
        let health = platform::ops::Health::of_database_and_kafka(
            platform::ops::probe_of(&store, tickets::PgStore::ping_owned),
            &settings.common.kafka,
            &topics.ticket_events,
        )?;
        let ops_addr = platform::ops::serve(&settings.ops_addr, health.clone(), shutdown)
            .await
            .with_context(|| format!("binding the ops listener {}", settings.ops_addr))?;
        let streams = edge::stream::Streams {
            store: store.clone(),
            hub: Arc::new(edge::stream::Hub::default()),
            config: settings.streams.clone(),
            shutdown: CancellationToken::new(),
        };
        let managers = manager::Managers {
            store: store.clone(),
            verifier: verifier.clone(),
            spec: Arc::new(spec),
            streams: streams.clone(),
            limiter: edge::ratelimit::RateLimiter::new(settings.rate_limit),
            files: settings.files.clone(),
        };
        let clients = client::Clients {
            chat: edge::client::ClientChat {
                store: store.clone(),
                publisher: edge::publish::Publisher::new(
                    &settings.common.kafka,
                    topics.inbound_messages.clone(),
                    settings.common.data_key.clone(),
                )
                .context("creating the Kafka producer")?,
                verifier: verifier.clone(),
                limiter: edge::ratelimit::RateLimiter::new(settings.rate_limit),
                streams: streams.clone(),
                files: settings.files.clone(),
                commands: edge::client::BotCommand::list(managers.spec.bots.offered()),
            },
        };
        let admins = admin::Admins {
            store,
            verifier,
            spec: managers.spec.clone(),
        };
        let listener = TcpListener::bind(&settings.grpc_addr)
            .await
            .with_context(|| format!("binding {}", settings.grpc_addr))?;
        let addr = listener.local_addr()?;
        let console = TcpListener::bind(&settings.console_addr)
            .await
            .with_context(|| format!("binding {}", settings.console_addr))?;
        let console_addr = console.local_addr()?;
        Ok(Self {
            listener,
            console,
            console_addr,
            browser: settings.browser.clone(),
            dev_tokens: settings.dev_tokens.clone(),
            console_login: settings.console_login.clone(),
            managers,
            clients,
            admins,
            streams,
            addr,
            ops_addr,
            health,
            ready_lapse: settings.ready_lapse,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where the web console and gRPC-Web are served.
    pub fn console_addr(&self) -> SocketAddr {
        self.console_addr
    }

    /// Where `/livez`, `/readyz` and `/metrics` are served.
    pub fn ops_addr(&self) -> SocketAddr {
        self.ops_addr
    }

    pub async fn serve(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        use proto::v1::admin_service_server::AdminServiceServer;
        use proto::v1::client_service_server::ClientServiceServer;
        use proto::v1::manager_service_server::ManagerServiceServer;
        // Streams end (telling callers where to resume) as soon as shutdown starts, so the
        // graceful stop does not wait on them.
        let streams_stop = self.streams.shutdown.clone();
        {
            let (store, hub, stop) = (
                self.streams.store.clone(),
                self.streams.hub.clone(),
                streams_stop.clone(),
            );
            platform::ops::supervise(
                &self.health,
                "outbox-tail",
                streams_stop.clone(),
                move || {
                    edge::stream::listen(store.clone(), hub.clone(), stop.clone(), |_| async {})
                },
            );
        }
        {
            let (store, hub, stop) = (
                self.streams.store.clone(),
                self.streams.hub.clone(),
                streams_stop.clone(),
            );
            platform::ops::supervise(&self.health, "typing", streams_stop.clone(), move || {
                edge::stream::listen_typing(store.clone(), hub.clone(), stop.clone())
            });
        }
        if let Some(lapse) = self.ready_lapse {
            let (store, hub, stop) = (
                self.streams.store.clone(),
                self.streams.hub.clone(),
                streams_stop.clone(),
            );
            platform::ops::supervise(&self.health, "presence", streams_stop.clone(), move || {
                presence(store.clone(), hub.clone(), lapse, stop.clone())
            });
        }
        let (health_reporter, health) = tonic_health::server::health_reporter();
        // The standard gRPC health (overall, service "") follows `/readyz`.
        {
            let (reporter, readiness, stop) = (
                health_reporter.clone(),
                self.health.clone(),
                shutdown.clone(),
            );
            tokio::spawn(async move {
                loop {
                    let status = if readiness.failures().await.is_empty() {
                        tonic_health::ServingStatus::Serving
                    } else {
                        tonic_health::ServingStatus::NotServing
                    };
                    reporter.set_service_status("", status).await;
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tokio::time::sleep(std::time::Duration::from_secs(5)) => {}
                    }
                }
            });
        }
        health_reporter
            .set_serving::<ManagerServiceServer<manager::Managers>>()
            .await;
        health_reporter
            .set_serving::<ClientServiceServer<client::Clients>>()
            .await;
        health_reporter
            .set_serving::<AdminServiceServer<admin::Admins>>()
            .await;
        // Both reflection versions: Google's Python client and several GUI tools speak only
        // v1alpha, grpcurl and newer tools v1.
        let reflection_builder = || {
            tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        };
        let reflection = reflection_builder().build_v1()?;
        let reflection_alpha = reflection_builder().build_v1alpha()?;
        tracing::info!(addr = %self.console_addr,
            "console and gRPC-Web on http://{}", self.console_addr);
        tracing::info!(addr = %self.addr, "gateway listening on grpc://{}", self.addr);
        let console = tokio::spawn(edge::web::serve(
            self.console,
            console::router(
                self.managers.clone(),
                self.clients.clone(),
                self.admins.clone(),
                &self.browser,
                self.dev_tokens.clone(),
                self.console_login.clone(),
            ),
            self.browser.header_timeout,
            shutdown.clone(),
            || {},
        ));
        let stop = {
            let shutdown = shutdown.clone();
            let readiness = self.health.clone();
            async move {
                shutdown.cancelled().await;
                readiness.drain();
                health_reporter
                    .set_service_status("", tonic_health::ServingStatus::NotServing)
                    .await;
                health_reporter
                    .set_not_serving::<ManagerServiceServer<manager::Managers>>()
                    .await;
                health_reporter
                    .set_not_serving::<ClientServiceServer<client::Clients>>()
                    .await;
                health_reporter
                    .set_not_serving::<AdminServiceServer<admin::Admins>>()
                    .await;
                streams_stop.cancel();
            }
        };
        // Every request of the API is small (a message body is at most a few KiB), but an upload
        // (a file within INBOX_ATTACHMENT_MAX_BYTES): a bigger one is refused before it is
        // decoded, and a connection holds a bounded number of streams.
        let upload_bytes = max_upload_request_bytes(&self.managers.files);
        tonic::transport::Server::builder()
            .max_concurrent_streams(MAX_STREAMS_PER_CONNECTION)
            .http2_keepalive_interval(Some(std::time::Duration::from_secs(30)))
            .http2_keepalive_timeout(Some(std::time::Duration::from_secs(20)))
            .add_service(health)
            .add_service(reflection)
            .add_service(reflection_alpha)
            .add_service(
                ManagerServiceServer::new(self.managers).max_decoding_message_size(upload_bytes),
            )
            .add_service(
                ClientServiceServer::new(self.clients).max_decoding_message_size(upload_bytes),
            )
            .add_service(
                AdminServiceServer::new(self.admins).max_decoding_message_size(MAX_REQUEST_BYTES),
            )
            .serve_with_incoming_shutdown(TcpListenerStream::new(self.listener), stop)
            .await?;
        console.await?;
        Ok(())
    }
}
