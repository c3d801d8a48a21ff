//! The names of the engine: every setting of every service, and the variables only the scripts
//! read.

/// The name of every setting of every service of the engine. One `ConfigMap` or `Secret` usually
/// feeds all three services, so a service ignores the settings of the others; only a name that no
/// service declares is a typo (refused in production). A service cannot see the others'
/// declarations (it does not link their crates), hence this list; `e2e/tests/settings.rs` checks
/// that it is exactly the union of the declarations.
pub const ENGINE_SETTINGS: &[&str] = &[
    "INBOX_AFC_DLQ_TOPIC",
    "INBOX_AFC_KEY",
    "INBOX_AFC_KEY_DIR",
    "INBOX_AFC_MSGS_TOPIC",
    "INBOX_AFC_PUBLIC_KEY",
    "INBOX_AFC_VERDICTS_TOPIC",
    "INBOX_CHANNELS",
    "INBOX_COMMUNICATION_OPS_ADDR",
    "INBOX_DATABASE_MAX_CONNECTIONS",
    "INBOX_DATABASE_PASSWORD",
    "INBOX_DATABASE_URL",
    "INBOX_EMAIL_ENABLED",
    "INBOX_EMAIL_REF_SECRET",
    "INBOX_GATEWAY_OPS_ADDR",
    "INBOX_GRPC_ADDR",
    "INBOX_HISTORY_LIMIT",
    "INBOX_HTTP_ADDR",
    "INBOX_IMAP_ADDR",
    "INBOX_IMAP_CA_FILE",
    "INBOX_IMAP_IDLE_SECS",
    "INBOX_IMAP_MAILBOX",
    "INBOX_IMAP_PASSWORD",
    "INBOX_IMAP_POLL_SECS",
    "INBOX_IMAP_TLS",
    "INBOX_IMAP_USER",
    "INBOX_JWKS_CA_FILE",
    "INBOX_JWKS_MIN_REFRESH_SECS",
    "INBOX_JWKS_REFRESH_SECS",
    "INBOX_JWKS_URL",
    "INBOX_JWT_AUDIENCE",
    "INBOX_JWT_ISSUER",
    "INBOX_JWT_SECRET",
    "INBOX_KAFKA_BROKERS",
    "INBOX_KAFKA_CA_FILE",
    "INBOX_KAFKA_CERT_FILE",
    "INBOX_KAFKA_KEY_FILE",
    "INBOX_KAFKA_PARTITIONS",
    "INBOX_KAFKA_REPLICATION",
    "INBOX_KAFKA_SASL_MECHANISM",
    "INBOX_KAFKA_SASL_PASSWORD",
    "INBOX_KAFKA_SASL_USERNAME",
    "INBOX_KAFKA_SECURITY_PROTOCOL",
    "INBOX_KAFKA_SOURCE_WAIT_MS",
    "INBOX_KAFKA_IDLE_POLL_MS",
    "INBOX_MAIL_FROM",
    "INBOX_OTLP_CA_FILE",
    "INBOX_OTLP_ENDPOINT",
    "INBOX_OTLP_SERVICE_NAME",
    "INBOX_PROFILE",
    "INBOX_RATE_LIMIT_BURST",
    "INBOX_RATE_LIMIT_PER_SECOND",
    "INBOX_SHUTDOWN_SECS",
    "INBOX_SMTP_ADDR",
    "INBOX_SMTP_CA_FILE",
    "INBOX_SMTP_PASSWORD",
    "INBOX_SMTP_RETRY_ATTEMPTS",
    "INBOX_SMTP_RETRY_BACKOFF_MS",
    "INBOX_SMTP_RETRY_MAX_BACKOFF_MS",
    "INBOX_SMTP_TIMEOUT_SECS",
    "INBOX_SMTP_TLS",
    "INBOX_SMTP_USER",
    "INBOX_SPEC",
    "INBOX_TASK_QUEUE",
    "INBOX_TELEGRAM_API_URL",
    "INBOX_TELEGRAM_ENABLED",
    "INBOX_TELEGRAM_IDLE_DELAY_MS",
    "INBOX_TELEGRAM_MODE",
    "INBOX_TELEGRAM_POLL_TIMEOUT_SECS",
    "INBOX_TELEGRAM_TOKEN",
    "INBOX_TELEGRAM_WEBHOOK_PATH",
    "INBOX_TELEGRAM_WEBHOOK_SECRET",
    "INBOX_TELEGRAM_WEBHOOK_URL",
    "INBOX_TEMPORAL_API_KEY",
    "INBOX_TEMPORAL_CA_FILE",
    "INBOX_TEMPORAL_CERT_FILE",
    "INBOX_TEMPORAL_KEY_FILE",
    "INBOX_TEMPORAL_NAMESPACE",
    "INBOX_TEMPORAL_SERVER_NAME",
    "INBOX_TEMPORAL_URL",
    "INBOX_TEST_CRASH_AFTER_PUBLISH",
    "INBOX_TOPIC_PREFIX",
    "INBOX_WEB_ENABLED",
    "INBOX_WORKFLOW_CACHE",
    "INBOX_WORKFLOW_OPS_ADDR",
];

/// Variables of the dev scripts and tests (`scripts/stack.sh`, `scripts/run.sh`, `make test`),
/// which every service inherits from them and ignores: the dev stack's ports and binaries, the
/// tool cache, and `make run CHANNELS=local`'s peers. Names ending in `_` are prefixes.
pub const SCRIPT_VARIABLES: &[&str] = &[
    "INBOX_CACHE",
    "INBOX_PG_PORT",
    "INBOX_PG_BIN",
    "INBOX_TEMPORAL_PORT",
    "INBOX_TEMPORAL_HTTP_PORT",
    "INBOX_TEMPORAL_METRICS_PORT",
    "INBOX_TEMPORAL_BIN",
    "INBOX_KAFKA_PORT",
    "INBOX_TANSU_BIN",
    "INBOX_NPM_PREFIX",
    "INBOX_NODE_MODULES",
    "INBOX_LOCAL_",
    "INBOX_RUN_",
    "INBOX_KEEP_PRIVATE_STACK",
    "INBOX_UPDATE_README",
    "INBOX_VISIBILITY_",
];

/// Whether `name` is one of [`SCRIPT_VARIABLES`].
pub fn is_script_variable(name: &str) -> bool {
    SCRIPT_VARIABLES.iter().any(|v| {
        if v.ends_with('_') {
            name.starts_with(v)
        } else {
            name == *v
        }
    })
}
