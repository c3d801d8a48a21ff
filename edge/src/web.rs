//! What both HTTP edges serve to browsers: the built web apps (`web/dist`: the console on the
//! gateway, the client widget on communication), CORS for the bank's other origins (the site
//! that embeds the widget), and the connection loop with read timeouts that both listeners use.

use std::path::{Path, PathBuf};
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderName, HeaderValue, Method};
use platform::settings::{Env, Kind, Setting, SettingError};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::services::{ServeDir, ServeFile};

pub static WEB_ROOT: Setting = Setting::new(
    "INBOX_WEB_ROOT",
    Kind::Path,
    "web/dist",
    "the built web apps (`make` builds `web/dist`): the gateway serves `console/`, communication `widget/`",
);

pub static CORS_ORIGINS: Setting = Setting::new(
    "INBOX_CORS_ORIGINS",
    Kind::Text,
    "",
    "origins whose pages may call the client API and the console's gRPC-Web, comma-separated (`https://www.bank.example`): the bank's site that embeds the widget",
);

pub static HTTP_HEADER_TIMEOUT_SECS: Setting = Setting::new(
    "INBOX_HTTP_HEADER_TIMEOUT_SECS",
    Kind::Int,
    "10",
    "a connection that has not sent a whole request head within this long (a slow or idle client) is closed",
);

pub static SETTINGS: &[&Setting] = &[&WEB_ROOT, &CORS_ORIGINS, &HTTP_HEADER_TIMEOUT_SECS];

#[derive(Debug, Clone)]
pub struct WebSettings {
    pub root: PathBuf,
    pub cors_origins: Vec<HeaderValue>,
    pub header_timeout: Duration,
}

impl WebSettings {
    pub fn from_env(env: &Env) -> Result<Self, SettingError> {
        let raw = env.text(&CORS_ORIGINS);
        let mut cors_origins = Vec::new();
        for origin in raw.split(',').map(str::trim).filter(|o| !o.is_empty()) {
            let (scheme, rest) = origin.split_once("://").unwrap_or(("", origin));
            let well_formed = matches!(scheme, "http" | "https")
                && !rest.is_empty()
                && !rest.contains('/')
                && !rest.contains('*');
            let value = HeaderValue::from_str(origin).ok().filter(|_| well_formed);
            cors_origins.push(value.ok_or_else(|| {
                env.error(
                    &CORS_ORIGINS,
                    origin,
                    "expected an origin: http(s)://host[:port], no path, no wildcard",
                )
            })?);
        }
        Ok(Self {
            root: env.text(&WEB_ROOT).into(),
            cors_origins,
            header_timeout: Duration::from_secs(
                env.parse::<u64>(&HTTP_HEADER_TIMEOUT_SECS)?.max(1),
            ),
        })
    }

    /// CORS for the configured origins (none: same-origin pages only). gRPC-Web needs its own
    /// request headers allowed and its trailers-in-headers exposed.
    pub fn cors(&self) -> CorsLayer {
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(self.cors_origins.clone()))
            .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
            .allow_headers(
                [
                    "authorization",
                    "content-type",
                    "x-grpc-web",
                    "x-user-agent",
                    "grpc-timeout",
                    "connect-protocol-version",
                ]
                .map(HeaderName::from_static),
            )
            .expose_headers(
                [
                    "grpc-status",
                    "grpc-message",
                    "grpc-status-details-bin",
                    "retry-after",
                ]
                .map(HeaderName::from_static),
            )
            .max_age(Duration::from_secs(600))
    }

    /// The built app `name` (`console`, `widget`) under [`WEB_ROOT`], with `index.html` for any
    /// path that names no file (the app routes in the browser).
    pub fn app(&self, name: &str) -> ServeDir<ServeFile> {
        let dir = self.root.join(name);
        ServeDir::new(&dir).fallback(ServeFile::new(dir.join("index.html")))
    }

    /// Whether the app `name` was built (`make run` and `make test` build `web/`).
    pub fn has_app(&self, name: &str) -> bool {
        app_built(&self.root, name)
    }
}

fn app_built(root: &Path, name: &str) -> bool {
    root.join(name).is_dir()
}

/// Serves `router` on `listener` until `shutdown`, then lets in-flight requests finish. hyper's own
/// connection loop rather than `axum::serve`, which has no read timeouts: a client that trickles
/// its request head (or holds a kept-alive connection silent) is cut off after `header_timeout`
/// instead of holding a connection and a task forever. `on_stop` runs once accepting has stopped,
/// before the connections drain (a readiness probe turns unready there).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    header_timeout: Duration,
    shutdown: CancellationToken,
    on_stop: impl FnOnce(),
) {
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(header_timeout)
        .keep_alive_timeout(header_timeout);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        let (tcp, _) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: wait rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let service = hyper_util::service::TowerToHyperService::new(router.clone());
        let conn = builder
            .serve_connection_with_upgrades(TokioIo::new(tcp), service)
            .into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "http connection ended");
            }
        });
    }
    on_stop();
    // In-flight requests finish; idle connections close now.
    graceful.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(cors: &str) -> Result<Env, SettingError> {
        Env::from_vars(
            [("INBOX_CORS_ORIGINS".to_owned(), cors.to_owned())],
            &[SETTINGS],
        )
    }

    #[test]
    fn cors_origins_are_origins_and_anything_else_is_refused_naming_the_variable()
    -> Result<(), SettingError> {
        let s = WebSettings::from_env(&env("https://www.bank.example, http://127.0.0.1:8080")?)?;
        assert_eq!(s.cors_origins.len(), 2);
        assert!(WebSettings::from_env(&env("")?)?.cors_origins.is_empty());
        for bad in [
            "*",
            "https://*.bank.example",
            "www.bank.example",
            "https://bank/x",
            "ftp://a",
        ] {
            let err = WebSettings::from_env(&env(bad)?)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(err.contains("INBOX_CORS_ORIGINS"), "{bad}: {err:?}");
        }
        Ok(())
    }
}
