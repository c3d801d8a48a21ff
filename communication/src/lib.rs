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
pub mod publisher;
pub mod ratelimit;
pub mod telegram;
pub mod telegram_webhook;

use std::net::SocketAddr;

use anyhow::Context;
use platform::settings::{self, Common};
use tickets::PgStore;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone)]
pub struct Settings {
    pub common: Common,
    pub http_addr: String,
    pub rate_limit: ratelimit::RateLimit,
    /// The web-chat client API; on unless the channels file (or `INBOX_WEB_ENABLED`) says off.
    pub web: bool,
    /// Off unless the channels file (or the environment) switches it on; see `channels.rs`.
    pub telegram: Option<telegram::TelegramSettings>,
    /// IMAP in and SMTP out, each when configured; see `channels.rs`.
    pub email: email::EmailSettings,
}

/// Why the settings are unusable: the service refuses to start with this message.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error(transparent)]
    Env(#[from] settings::SettingError),
    #[error(transparent)]
    Channels(#[from] channels::ChannelsError),
}

impl Settings {
    /// The environment plus the channels file (`INBOX_CHANNELS`, default `channels.yaml`).
    pub fn from_env() -> Result<Self, SettingsError> {
        let default = ratelimit::RateLimit::default();
        let channels = channels::Channels::load()?;
        if let Some(file) = &channels.file {
            tracing::info!(%file, "channels file loaded (environment variables override it)");
        } else {
            tracing::info!("no channels file: channels from the environment only");
        }
        Ok(Self {
            common: Common::from_env(),
            http_addr: settings::var("INBOX_HTTP_ADDR", "127.0.0.1:18480"),
            rate_limit: ratelimit::RateLimit {
                burst: settings::parse("INBOX_RATE_LIMIT_BURST", default.burst)?,
                per_second: settings::parse("INBOX_RATE_LIMIT_PER_SECOND", default.per_second)?,
            },
            web: channels.web,
            telegram: channels.telegram,
            email: channels.email,
        })
    }
}

/// A bound, ready-to-serve communication service.
pub struct Application {
    listener: TcpListener,
    router: axum::Router,
    addr: SocketAddr,
}

impl Application {
    /// Connects to its dependencies and binds the listener (port 0 picks a free port).
    pub async fn build(settings: Settings, shutdown: CancellationToken) -> anyhow::Result<Self> {
        let store = PgStore::connect(&settings.common.database_url)
            .await
            .context("connecting to PostgreSQL")?;
        store.migrate().await?;
        let topics = settings.common.topics();
        let brokers = &settings.common.kafka_brokers;
        platform::kafka::ensure_topics(brokers, &topics.all()).await?;
        let (wakeups, _) = tokio::sync::broadcast::channel(4096);
        events::listen(
            brokers,
            &topics.ticket_events,
            wakeups.clone(),
            shutdown.clone(),
        )?;
        let publisher = publisher::Publisher::new(brokers, topics.inbound_messages.clone())?;
        crash::warn_if_armed();
        let mut webhook = None;
        if let Some(tg) = &settings.telegram {
            match &tg.webhook {
                None => {
                    tracing::info!(api = %tg.api_url, "telegram channel on (long polling)");
                    tokio::spawn(telegram::poll_updates(
                        tg.clone(),
                        store.clone(),
                        publisher.clone(),
                        shutdown.clone(),
                    ));
                }
                Some(hook) => {
                    tracing::info!(api = %tg.api_url, path = %hook.path,
                        "telegram channel on (webhook)");
                    telegram_webhook::register(tg, hook).await?;
                    webhook = Some(telegram_webhook::router(hook, publisher.clone()));
                }
            }
            tokio::spawn(delivery::run(
                telegram::TelegramOutbound::new(tg)?,
                store.clone(),
                wakeups.clone(),
                shutdown.clone(),
            ));
        }
        if let Some(imap) = &settings.email.imap {
            tracing::info!(addr = %imap.addr, mailbox = %imap.mailbox,
                tls = imap.tls.mode.as_str(), "email inbound (IMAP) on");
            tokio::spawn(email::imap::run(
                imap.clone(),
                store.clone(),
                publisher.clone(),
                shutdown.clone(),
            ));
        }
        if let Some(smtp) = &settings.email.smtp {
            tracing::info!(addr = %smtp.addr, from = %smtp.from, tls = smtp.tls.mode.as_str(),
                retry = ?smtp.retry, "email outbound (SMTP) on");
            tokio::spawn(delivery::run_with(
                email::smtp::EmailOutbound::new(smtp, store.clone())?,
                store.clone(),
                wakeups.clone(),
                shutdown.clone(),
                smtp.retry,
            ));
        }
        let state = http::AppState {
            store,
            publisher,
            verifier: settings.common.verifier(),
            wakeups,
            limiter: ratelimit::RateLimiter::new(settings.rate_limit),
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
        let listener = TcpListener::bind(&settings.http_addr)
            .await
            .with_context(|| format!("binding {}", settings.http_addr))?;
        let addr = listener.local_addr()?;
        Ok(Self {
            listener,
            router,
            addr,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub async fn serve(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        tracing::info!(addr = %self.addr, "communication listening on http://{}", self.addr);
        axum::serve(self.listener, self.router)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await?;
        Ok(())
    }
}
