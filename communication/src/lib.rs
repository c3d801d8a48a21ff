//! The communication service: the client edge. It takes client messages from the channels (web chat
//! over HTTP, Telegram, email), turns them into one internal `InboundMessage`,
//! publishes them to Kafka and answers only after the broker acknowledged; and it streams each
//! client's events (accepted, blocked, assigned, replies, closed) back on their channel.
//! It never decides anything about a ticket: that is the workflow service's job.

pub mod channels;
pub mod crash;
pub mod delivery;
pub mod email;
pub mod error;
pub mod events;
pub mod http;
pub mod openapi;
pub mod settings;
pub mod telegram;
pub mod telegram_files;
pub mod telegram_webhook;

use std::net::SocketAddr;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use settings::{Settings, SettingsError};

/// A bound, ready-to-serve communication service.
pub struct Application {
    listener: TcpListener,
    router: axum::Router,
    addr: SocketAddr,
    ops_addr: SocketAddr,
    health: std::sync::Arc<platform::ops::Health>,
    sockets: tokio_util::task::TaskTracker,
    header_timeout: std::time::Duration,
}

impl Application {
    /// Connects to its dependencies and binds the listener (port 0 picks a free port).
    pub async fn build(settings: Settings, shutdown: CancellationToken) -> anyhow::Result<Self> {
        let db = &settings.common.database;
        let store =
            tickets::PgStore::open("communication", &db.url, db.password(), db.max_connections)
                .await
                .context("connecting to PostgreSQL")?;
        let verifier = edge::auth::Verifier::from_settings(&settings.common.auth)?;
        verifier.start(shutdown.clone()).await;
        let topics = settings.common.topics();
        let kafka = &settings.common.kafka;
        platform::kafka::ensure_topics(kafka, &topics.all()).await?;
        let health = platform::ops::Health::of_database_and_kafka(
            platform::ops::probe_of(&store, tickets::PgStore::ping_owned),
            kafka,
            &topics.inbound_messages,
        )?;
        let ops_addr = platform::ops::serve(&settings.ops_addr, health.clone(), shutdown.clone())
            .await
            .with_context(|| format!("binding the ops listener {}", settings.ops_addr))?;
        let (wakeups, _) = tokio::sync::broadcast::channel(4096);
        // The WebSockets end (saying where to resume) as soon as shutdown starts.
        let streams = edge::stream::Streams {
            store: store.clone(),
            hub: std::sync::Arc::new(edge::stream::Hub::default()),
            config: settings.streams.clone(),
            shutdown: shutdown.clone(),
        };
        {
            let (store, hub, wakeups, stop) = (
                store.clone(),
                streams.hub.clone(),
                wakeups.clone(),
                shutdown.clone(),
            );
            platform::ops::supervise(&health, "outbox-tail", shutdown.clone(), move || {
                edge::stream::listen(
                    store.clone(),
                    hub.clone(),
                    stop.clone(),
                    events::wake_deliveries(store.clone(), wakeups.clone()),
                )
            });
        }
        {
            let (store, hub, stop) = (store.clone(), streams.hub.clone(), shutdown.clone());
            platform::ops::supervise(&health, "typing", shutdown.clone(), move || {
                edge::stream::listen_typing(store.clone(), hub.clone(), stop.clone())
            });
        }
        {
            let (store, files, stop) = (store.clone(), settings.files.clone(), shutdown.clone());
            platform::ops::supervise(&health, "attachment-purge", shutdown.clone(), move || {
                edge::files::purge(store.clone(), files.clone(), stop.clone())
            });
        }
        let publisher = edge::publish::Publisher::new(
            kafka,
            topics.inbound_messages.clone(),
            settings.common.data_key.clone(),
        )?;
        crash::warn_if_armed();
        // One budget per client id for every write path of this process (web chat, Telegram, email).
        let limiter = edge::ratelimit::RateLimiter::new(settings.rate_limit);
        let mut webhook = None;
        let commands =
            edge::client::BotCommand::list(spec::Spec::load(&settings.spec_path)?.bots.offered());
        if let Some(tg) = &settings.telegram {
            let bot = tg.bot()?;
            tokio::spawn(telegram::publish_commands(
                bot.clone(),
                commands.clone(),
                shutdown.clone(),
            ));
            let intake = telegram::Intake {
                bot,
                store: store.clone(),
                publisher: publisher.clone(),
                limiter: limiter.clone(),
                files: settings.files.clone(),
            };
            match &tg.webhook {
                None => {
                    tracing::info!(api = %tg.api_url, "telegram channel on (long polling)");
                    let (tg, stop) = (tg.clone(), shutdown.clone());
                    platform::ops::supervise(&health, "telegram-in", shutdown.clone(), move || {
                        telegram::poll_updates(tg.clone(), intake.clone(), stop.clone())
                    });
                }
                Some(hook) => {
                    tracing::info!(api = %tg.api_url, path = %hook.path,
                        "telegram channel on (webhook)");
                    telegram_webhook::register(tg, hook).await?;
                    webhook = Some(telegram_webhook::router(hook, intake));
                }
            }
            let (out, store, wakeups, stop) = (
                telegram::TelegramOutbound::new(tg, settings.files.clone(), store.clone())?,
                store.clone(),
                wakeups.clone(),
                shutdown.clone(),
            );
            platform::ops::supervise(&health, "telegram-out", shutdown.clone(), move || {
                delivery::run(out.clone(), store.clone(), wakeups.clone(), stop.clone())
            });
        }
        if let Some(imap) = &settings.email.imap {
            tracing::info!(addr = %imap.addr, mailbox = %imap.mailbox,
                tls = imap.tls.mode.as_str(), "email inbound (IMAP) on");
            let (imap, store, publisher, limiter, files, stop) = (
                imap.clone(),
                store.clone(),
                publisher.clone(),
                limiter.clone(),
                settings.files.clone(),
                shutdown.clone(),
            );
            platform::ops::supervise(&health, "imap", shutdown.clone(), move || {
                email::imap::run(
                    imap.clone(),
                    store.clone(),
                    publisher.clone(),
                    limiter.clone(),
                    files.clone(),
                    stop.clone(),
                )
            });
        }
        if let Some(smtp) = &settings.email.smtp {
            tracing::info!(addr = %smtp.addr, from = %smtp.from, tls = smtp.tls.mode.as_str(),
                retry = ?smtp.retry, "email outbound (SMTP) on");
            let (out, store, wakeups, stop, retry) = (
                email::smtp::EmailOutbound::new(smtp, store.clone(), settings.files.clone())?,
                store.clone(),
                wakeups.clone(),
                shutdown.clone(),
                smtp.retry,
            );
            platform::ops::supervise(&health, "smtp-out", shutdown.clone(), move || {
                delivery::run_with(
                    out.clone(),
                    store.clone(),
                    wakeups.clone(),
                    stop.clone(),
                    retry,
                )
            });
        }
        let sockets = tokio_util::task::TaskTracker::new();
        let state = http::AppState {
            chat: edge::client::ClientChat {
                store,
                publisher,
                verifier,
                limiter: limiter.clone(),
                streams,
                files: settings.files.clone(),
                commands,
            },
            sockets: sockets.clone(),
        };
        let mut router = if settings.web {
            http::router(state)
        } else {
            tracing::info!("web chat off: the client API is not served");
            axum::Router::new().route("/healthz", axum::routing::get(|| async { "ok" }))
        };
        if let Some(hook) = webhook {
            router = router.merge(hook);
        }
        // The client widget, for the bank's site to embed (`/widget/widget.js`, a demo page).
        if settings.browser.has_app("widget") {
            router = router.nest_service("/widget", settings.browser.app("widget"));
        } else {
            tracing::info!(root = %settings.browser.root.display(),
                "no built widget under the web root: /widget is not served");
        }
        let router = router.layer(settings.browser.cors());
        let listener = TcpListener::bind(&settings.http_addr)
            .await
            .with_context(|| format!("binding {}", settings.http_addr))?;
        let addr = listener.local_addr()?;
        Ok(Self {
            listener,
            router,
            addr,
            ops_addr,
            health,
            sockets,
            header_timeout: settings.browser.header_timeout,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where `/livez`, `/readyz` and `/metrics` are served.
    pub fn ops_addr(&self) -> SocketAddr {
        self.ops_addr
    }

    pub async fn serve(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        tracing::info!(addr = %self.addr, "communication listening on http://{}", self.addr);
        let health = self.health.clone();
        edge::web::serve(
            self.listener,
            self.router,
            self.header_timeout,
            shutdown,
            move || health.drain(),
        )
        .await;
        // Upgraded connections outlive the server: each WebSocket sends its close frame ("going
        // away", resume after the last event) before the process ends.
        self.sockets.close();
        self.sockets.wait().await;
        Ok(())
    }
}
