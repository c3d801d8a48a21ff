//! Tracing: log lines to stderr, filtered by `RUST_LOG` (default `info`), and, when
//! `INBOX_OTLP_ENDPOINT` is set, spans exported to an OpenTelemetry collector over OTLP/gRPC.
//!
//! A client message is one trace across the services: the trace context travels as a W3C
//! `traceparent` in Kafka record headers ([`kafka_headers`], [`kafka_traceparent`]) and, where the
//! message rests in PostgreSQL between two stages (the ticket workflow's activities, the outbox
//! relay, the WebSocket push), in a column next to it; a stage that picks it up makes its span a
//! child of it ([`set_parent`]). With the export off ([`enabled`] false) nothing of this runs:
//! no header is written or read, no context is stored, no per-record span is made.
//!
//! `RUST_LOG` filters the log lines only: spans of the engine's own crates are exported at `info`
//! whatever it says, and nothing of the libraries underneath (the exporter's own gRPC calls would
//! otherwise trace themselves). The standard `OTEL_*` variables of the SDK apply (e.g.
//! `OTEL_TRACES_SAMPLER=parentbased_traceidratio`, `OTEL_TRACES_SAMPLER_ARG=0.1`,
//! `OTEL_BSP_SCHEDULE_DELAY` in ms).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator as _};
use opentelemetry::trace::{TraceContextExt as _, TracerProvider as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::Layer as _;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

use crate::settings::{Env, Kind, Refusals, Setting, SettingError};

pub static OTLP_ENDPOINT: Setting = Setting::optional(
    "INBOX_OTLP_ENDPOINT",
    Kind::Url,
    "OpenTelemetry collector (OTLP/gRPC) spans are exported to, e.g. `http://collector:4317`; `https://` for TLS. Unset: no export",
);
pub static OTLP_SERVICE_NAME: Setting = Setting::optional(
    "INBOX_OTLP_SERVICE_NAME",
    Kind::Text,
    "`service.name` of the exported spans (default: the service's own name)",
);
pub static OTLP_CA_FILE: Setting = Setting::optional(
    "INBOX_OTLP_CA_FILE",
    Kind::Path,
    "CA (PEM) of the collector's certificate with an `https://` endpoint (else the system roots)",
);

/// The tracing settings, read by every service.
pub static SETTINGS: &[&Setting] = &[&OTLP_ENDPOINT, &OTLP_SERVICE_NAME, &OTLP_CA_FILE];

/// The Kafka record header (and W3C field) that carries the trace context.
pub const TRACEPARENT: &str = "traceparent";

/// The crates whose spans are exported.
const TRACED_CRATES: &[&str] = &[
    "communication",
    "gateway",
    "workflow",
    "edge",
    "spec",
    "platform",
    "tickets",
];

static ENABLED: AtomicBool = AtomicBool::new(false);

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error(transparent)]
    Setting(#[from] SettingError),
    #[error("INBOX_OTLP_CA_FILE {path}: {error}")]
    CaFile { path: String, error: std::io::Error },
    #[error("OTLP exporter: {0}")]
    Exporter(#[from] opentelemetry_otlp::ExporterBuildError),
}

/// Whether spans are exported: the switch every propagation step checks first.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Log lines only, for tools (`afc-emulator`).
pub fn init() {
    install(None);
}

/// Held by a service's `main` until it returns: dropping it flushes the spans not yet exported.
#[must_use = "dropping the guard stops the export"]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        let Some(provider) = self.provider.take() else {
            return;
        };
        ENABLED.store(false, Ordering::Relaxed);
        // The export runs on the SDK's own thread, over a gRPC channel driven by the runtime's
        // workers: wait for it without holding one of them.
        let flush = move || {
            if let Err(e) = provider.shutdown_with_timeout(Duration::from_secs(5)) {
                tracing::warn!(error = %e, "spans not flushed at shutdown");
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(flush)
            }
            _ => flush(),
        }
    }
}

/// Log lines, and the span export when `INBOX_OTLP_ENDPOINT` is set, for `service` (its
/// `service.name` unless `INBOX_OTLP_SERVICE_NAME` says otherwise). Called inside the Tokio
/// runtime (the exporter's channel is made on it); a bad value is an error naming the variable.
pub fn init_service(service: &'static str) -> Result<Telemetry, TelemetryError> {
    let env = Env::from_process(&[SETTINGS])?;
    let Some(endpoint) = endpoint(&env)? else {
        install(None);
        return Ok(Telemetry { provider: None });
    };
    let provider = provider(&env, service, &endpoint)?;
    install(Some(&provider));
    ENABLED.store(true, Ordering::Relaxed);
    tracing::info!(endpoint = %endpoint, "exporting spans over OTLP");
    Ok(Telemetry {
        provider: Some(provider),
    })
}

/// What the production profile refuses: spans name clients and managers, so they leave the host
/// encrypted unless the collector runs next to the service (a sidecar on loopback).
pub fn refusals(env: &Env, r: &mut Refusals) {
    let Ok(Some(url)) = endpoint(env) else {
        return;
    };
    let loopback = matches!(url.host_str(), Some("localhost" | "127.0.0.1" | "[::1]"));
    r.check(
        url.scheme() != "https" && !loopback,
        format!(
            "INBOX_OTLP_ENDPOINT={url} is plain text to another host: use https:// (TLS) or a collector on loopback"
        ),
    );
}

fn endpoint(env: &Env) -> Result<Option<reqwest::Url>, SettingError> {
    let Some(url) = env.opt_parse::<reqwest::Url>(&OTLP_ENDPOINT)? else {
        return Ok(None);
    };
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(env.error(
            &OTLP_ENDPOINT,
            url.as_str(),
            "expected http://host:port or https://host:port (OTLP over gRPC)",
        ));
    }
    if env.is_set(&OTLP_CA_FILE) && url.scheme() != "https" {
        return Err(env.error(
            &OTLP_ENDPOINT,
            url.as_str(),
            "INBOX_OTLP_CA_FILE needs an https:// endpoint",
        ));
    }
    Ok(Some(url))
}

fn provider(
    env: &Env,
    service: &'static str,
    endpoint: &reqwest::Url,
) -> Result<SdkTracerProvider, TelemetryError> {
    use opentelemetry_otlp::tonic_types::transport::{Certificate, ClientTlsConfig};
    use opentelemetry_otlp::{WithExportConfig as _, WithTonicConfig as _};
    let mut exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint.as_str());
    if endpoint.scheme() == "https" {
        let mut tls = ClientTlsConfig::new().with_native_roots();
        if let Some(path) = env.opt(&OTLP_CA_FILE) {
            let pem = std::fs::read(&path).map_err(|error| TelemetryError::CaFile {
                path: path.clone(),
                error,
            })?;
            tls = tls.ca_certificate(Certificate::from_pem(pem));
        }
        exporter = exporter.with_tls_config(tls);
    }
    let name = env
        .opt(&OTLP_SERVICE_NAME)
        .unwrap_or_else(|| service.into());
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter.build()?)
        .with_resource(
            opentelemetry_sdk::Resource::builder()
                .with_service_name(name)
                .build(),
        )
        .build())
}

fn install(provider: Option<&SdkTracerProvider>) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let Some(provider) = provider else {
        // The filter as a global layer (no per-layer filter, see `Uncached`): as always.
        let _ = tracing_subscriber::registry()
            .with(filter)
            .with(log_lines())
            .try_init();
        return;
    };
    let traced = tracing_subscriber::filter::Targets::new().with_targets(
        TRACED_CRATES
            .iter()
            .map(|c| (*c, tracing::level_filters::LevelFilter::INFO)),
    );
    let spans = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("inbox"))
        .with_filter(Uncached(traced));
    let _ = tracing_subscriber::registry()
        .with(log_lines().with_filter(Uncached(filter)))
        .with(spans)
        .try_init();
}

/// Log lines on stderr (colours on a terminal only).
fn log_lines<S>() -> impl tracing_subscriber::Layer<S>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
}

/// A per-layer filter whose callsites are never cached as always enabled, so its decision is made
/// afresh for each span and event. Per-layer filters hand their decision from `enabled` to
/// `on_new_span`/`on_event` through a thread-local; a callsite cached as "always" skips
/// `enabled`, and reads whatever the last `enabled` call on that thread left there: after sqlx
/// asked whether to log a query (it does after every one), the next span or log line was dropped
/// from a layer now and then (tokio-rs/tracing#2519; upstream fix proposed in #3572). Seen here as
/// spans missing from traces and log lines missing from stderr. The cost: one filter check per
/// enabled span or event.
struct Uncached<F>(F);

impl<S, F: tracing_subscriber::layer::Filter<S>> tracing_subscriber::layer::Filter<S>
    for Uncached<F>
{
    fn enabled(
        &self,
        meta: &tracing::Metadata<'_>,
        cx: &tracing_subscriber::layer::Context<'_, S>,
    ) -> bool {
        self.0.enabled(meta, cx)
    }

    fn callsite_enabled(
        &self,
        meta: &'static tracing::Metadata<'static>,
    ) -> tracing::subscriber::Interest {
        let interest = self.0.callsite_enabled(meta);
        if interest.is_always() {
            tracing::subscriber::Interest::sometimes()
        } else {
            interest
        }
    }

    fn event_enabled(
        &self,
        event: &tracing::Event<'_>,
        cx: &tracing_subscriber::layer::Context<'_, S>,
    ) -> bool {
        self.0.event_enabled(event, cx)
    }

    fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
        self.0.max_level_hint()
    }

    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        self.0.on_new_span(attrs, id, ctx)
    }

    fn on_record(
        &self,
        id: &tracing::span::Id,
        values: &tracing::span::Record<'_>,
        ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        self.0.on_record(id, values, ctx)
    }

    fn on_enter(&self, id: &tracing::span::Id, ctx: tracing_subscriber::layer::Context<'_, S>) {
        self.0.on_enter(id, ctx)
    }

    fn on_exit(&self, id: &tracing::span::Id, ctx: tracing_subscriber::layer::Context<'_, S>) {
        self.0.on_exit(id, ctx)
    }

    fn on_close(&self, id: tracing::span::Id, ctx: tracing_subscriber::layer::Context<'_, S>) {
        self.0.on_close(id, ctx)
    }
}

/// A carrier of the one field this engine propagates.
struct Traceparent<'a>(Option<&'a str>);

impl Extractor for Traceparent<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        if key == TRACEPARENT { self.0 } else { None }
    }

    fn keys(&self) -> Vec<&str> {
        vec![TRACEPARENT]
    }
}

struct Injected(Option<String>);

impl Injector for Injected {
    fn set(&mut self, key: &str, value: String) {
        if key == TRACEPARENT {
            self.0 = Some(value);
        }
    }
}

/// The W3C `traceparent` of `span`, to hand to the next stage: None when the export is off or
/// `span` is not traced.
pub fn traceparent(span: &tracing::Span) -> Option<String> {
    if !enabled() {
        return None;
    }
    let cx = span.context();
    if !cx.span().span_context().is_valid() {
        return None;
    }
    let mut out = Injected(None);
    TraceContextPropagator::new().inject_context(&cx, &mut out);
    out.0
}

/// Makes `span` (not yet entered) a child of the remote context `traceparent`. A malformed value
/// is ignored: `span` then starts a trace of its own.
pub fn set_parent(span: &tracing::Span, traceparent: &str) {
    if !enabled() {
        return;
    }
    let cx = TraceContextPropagator::new().extract(&Traceparent(Some(traceparent)));
    if cx.span().span_context().is_valid() {
        let _ = span.set_parent(cx);
    }
}

/// Links `span` to the remote context `traceparent`: for a stage that handles several messages
/// at once, each message's trace leads to it.
pub fn add_link(span: &tracing::Span, traceparent: &str) {
    if !enabled() {
        return;
    }
    let cx = TraceContextPropagator::new().extract(&Traceparent(Some(traceparent)));
    span.add_link(cx.span().span_context().clone());
}

/// [`set_parent`] to the first of `traceparents`, [`add_link`] to the others.
pub fn follow<'a>(span: &tracing::Span, traceparents: impl IntoIterator<Item = &'a str>) {
    let mut all = traceparents.into_iter();
    if let Some(first) = all.next() {
        set_parent(span, first);
    }
    for other in all {
        add_link(span, other);
    }
}

/// Kafka record headers carrying the trace context of `span`; None when the export is off.
pub fn kafka_headers(span: &tracing::Span) -> Option<rdkafka::message::OwnedHeaders> {
    let value = traceparent(span)?;
    Some(
        rdkafka::message::OwnedHeaders::new_with_capacity(1).insert(rdkafka::message::Header {
            key: TRACEPARENT,
            value: Some(&value),
        }),
    )
}

/// The `traceparent` header of a Kafka record; None when the export is off or it has none.
pub fn kafka_traceparent<M: rdkafka::Message>(record: &M) -> Option<&str> {
    use rdkafka::message::Headers as _;
    if !enabled() {
        return None;
    }
    record
        .headers()?
        .iter()
        .find(|h| h.key == TRACEPARENT)
        .and_then(|h| h.value)
        .and_then(|v| std::str::from_utf8(v).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&str, &str)]) -> Env {
        Env::from_vars(
            vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
            &[SETTINGS],
        )
        .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn the_export_is_off_unless_an_endpoint_is_set() -> anyhow::Result<()> {
        assert!(endpoint(&env(&[]))?.is_none());
        let url = endpoint(&env(&[("INBOX_OTLP_ENDPOINT", "http://collector:4317")]))?;
        assert_eq!(
            url.map(|u| u.to_string()).as_deref(),
            Some("http://collector:4317/")
        );
        Ok(())
    }

    #[test]
    fn an_endpoint_that_is_not_an_otlp_grpc_url_is_an_error_naming_the_variable() {
        for bad in ["collector:4317", "ftp://collector", "http://"] {
            let err = endpoint(&env(&[("INBOX_OTLP_ENDPOINT", bad)])).err();
            assert!(
                err.as_ref()
                    .is_some_and(|e| e.name == "INBOX_OTLP_ENDPOINT"),
                "{bad}: {err:?}"
            );
        }
        let ca_without_tls = endpoint(&env(&[
            ("INBOX_OTLP_ENDPOINT", "http://collector:4317"),
            ("INBOX_OTLP_CA_FILE", "/etc/ca.pem"),
        ]));
        assert!(ca_without_tls.is_err());
    }

    #[test]
    fn production_refuses_plain_text_spans_to_another_host_but_not_to_a_sidecar() {
        let refused = |url: &str| {
            let mut r = Refusals::new();
            refusals(&env(&[("INBOX_OTLP_ENDPOINT", url)]), &mut r);
            !r.lines().is_empty()
        };
        assert!(refused("http://collector.monitoring:4317"));
        assert!(!refused("https://collector.monitoring:4317"));
        assert!(!refused("http://127.0.0.1:4317"));
        assert!(!refused("http://localhost:4317"));
    }

    #[tokio::test]
    async fn an_https_endpoint_takes_the_system_roots_or_the_given_ca() -> anyhow::Result<()> {
        let url: reqwest::Url = "https://collector:4317".parse()?;
        let https = env(&[("INBOX_OTLP_ENDPOINT", url.as_str())]);
        provider(&https, "test", &url)?.shutdown()?;
        let missing_ca = env(&[
            ("INBOX_OTLP_ENDPOINT", url.as_str()),
            ("INBOX_OTLP_CA_FILE", "/nonexistent/ca.pem"),
        ]);
        assert!(matches!(
            provider(&missing_ca, "test", &url),
            Err(TelemetryError::CaFile { .. })
        ));
        Ok(())
    }

    #[test]
    fn with_the_export_off_nothing_is_propagated() {
        let span = tracing::info_span!("off");
        assert_eq!(traceparent(&span), None);
        assert!(kafka_headers(&span).is_none());
    }
}
