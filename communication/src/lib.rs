//! The communication service: the client edge. It takes client messages from the channels (web chat
//! over HTTP, Telegram, email), turns them into one internal `InboundMessage`,
//! publishes them to Kafka and answers only after the broker acknowledged; and it streams each
//! client's events (accepted, blocked, assigned, replies, closed) back on their channel.
//! It never decides anything about a ticket: that is the workflow service's job.

pub mod delivery;
pub mod email;
pub mod error;
pub mod events;
pub mod http;
pub mod openapi;
pub mod publisher;
pub mod ratelimit;
pub mod telegram;

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
    /// Off unless `INBOX_TELEGRAM_TOKEN` is set.
    pub telegram: Option<telegram::TelegramSettings>,
    /// IMAP in unless `INBOX_IMAP_ADDR` is unset, SMTP out unless `INBOX_SMTP_ADDR` is unset.
    pub email: email::EmailSettings,
}

impl Settings {
    pub fn from_env() -> Result<Self, settings::SettingError> {
        let default = ratelimit::RateLimit::default();
        Ok(Self {
            common: Common::from_env(),
            http_addr: settings::var("INBOX_HTTP_ADDR", "127.0.0.1:18480"),
            rate_limit: ratelimit::RateLimit {
                burst: settings::parse("INBOX_RATE_LIMIT_BURST", default.burst)?,
                per_second: settings::parse("INBOX_RATE_LIMIT_PER_SECOND", default.per_second)?,
            },
            telegram: telegram::TelegramSettings::from_env()?,
            email: email::EmailSettings::from_env()?,
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
        if let Some(tg) = &settings.telegram {
            tracing::info!(api = %tg.api_url, "telegram channel on");
            tokio::spawn(telegram::poll_updates(
                tg.clone(),
                store.clone(),
                publisher.clone(),
                shutdown.clone(),
            ));
            tokio::spawn(delivery::run(
                telegram::TelegramOutbound::new(tg)?,
                store.clone(),
                wakeups.clone(),
                shutdown.clone(),
            ));
        }
        if let Some(imap) = &settings.email.imap {
            tracing::info!(addr = %imap.addr, mailbox = %imap.mailbox, "email inbound (IMAP) on");
            tokio::spawn(email::imap::run(
                imap.clone(),
                store.clone(),
                publisher.clone(),
                shutdown.clone(),
            ));
        }
        if let Some(smtp) = &settings.email.smtp {
            tracing::info!(addr = %smtp.addr, from = %smtp.from, "email outbound (SMTP) on");
            tokio::spawn(delivery::run(
                email::smtp::EmailOutbound::new(smtp, store.clone())?,
                store.clone(),
                wakeups.clone(),
                shutdown.clone(),
            ));
        }
        let state = http::AppState {
            store,
            publisher,
            verifier: settings.common.verifier(),
            wakeups,
            limiter: ratelimit::RateLimiter::new(settings.rate_limit),
        };
        let listener = TcpListener::bind(&settings.http_addr)
            .await
            .with_context(|| format!("binding {}", settings.http_addr))?;
        let addr = listener.local_addr()?;
        Ok(Self {
            listener,
            router: http::router(state),
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
