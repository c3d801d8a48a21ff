//! Settings: every `INBOX_*` variable a service reads is declared once, as a [`Setting`] (name,
//! type, default, doc, secret or not), in the list of the service that reads it. A service takes a
//! snapshot of its environment ([`Env`]) at start, reads each value through its declaration and
//! refuses to start on a bad value with an error naming the variable; `<service> --print-config`
//! prints the list with each value's source, secrets masked ([`Env::report`]). The README's
//! configuration table is checked against these lists by a test (`e2e/tests/settings.rs`).
//!
//! Why not a config crate: the values come from the environment only (a Kubernetes Deployment's
//! `env`/`envFrom`), and what must be the product's own is the list itself (docs, secrets, the
//! production profile's rules), which a loader would not give.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

pub use secrecy::{ExposeSecret, SecretString};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("setting {name}={value:?}: {reason}")]
pub struct SettingError {
    pub name: String,
    pub value: String,
    pub reason: String,
}

/// What kind of value a setting takes (shown in `--print-config` and the README).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Text,
    /// Never printed: `--print-config` shows whether it is set, not its value.
    Secret,
    /// A URL whose password part (if any) is never printed.
    Url,
    /// `host:port`.
    Addr,
    Int,
    Bool,
    Path,
    /// One of the listed words.
    Choice(&'static [&'static str]),
}

impl Kind {
    pub fn describe(&self) -> String {
        match self {
            Kind::Text => "text".into(),
            Kind::Secret => "secret".into(),
            Kind::Url => "URL".into(),
            Kind::Addr => "host:port".into(),
            Kind::Int => "integer".into(),
            Kind::Bool => "true/false".into(),
            Kind::Path => "path".into(),
            Kind::Choice(words) => words.join(" \\| "),
        }
    }
}

/// One environment variable, declared once.
#[derive(Debug)]
pub struct Setting {
    pub name: &'static str,
    pub kind: Kind,
    /// Used when the variable is unset or empty; `None`: no value (optional, or required where
    /// the service says so).
    pub default: Option<&'static str>,
    pub doc: &'static str,
}

impl Setting {
    pub const fn new(
        name: &'static str,
        kind: Kind,
        default: &'static str,
        doc: &'static str,
    ) -> Self {
        Self {
            name,
            kind,
            default: Some(default),
            doc,
        }
    }

    /// A setting with no default.
    pub const fn optional(name: &'static str, kind: Kind, doc: &'static str) -> Self {
        Self {
            name,
            kind,
            default: None,
            doc,
        }
    }

    pub fn is_secret(&self) -> bool {
        self.kind == Kind::Secret
    }
}

/// How strictly a service checks its settings (`INBOX_PROFILE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// `make run` and the tests: local defaults, dev secrets allowed, a warning banner at start.
    Dev,
    /// A bank's deployment: refuses to start on anything insecure (see [`Refusals`]).
    Production,
}

pub static PROFILE: Setting = Setting::new(
    "INBOX_PROFILE",
    Kind::Choice(&["dev", "production"]),
    "dev",
    "`production` refuses to start on an insecure setting (see Production); `dev` warns",
);

/// A snapshot of the process environment, read through the declarations of one service.
pub struct Env {
    vars: BTreeMap<String, String>,
    declared: Vec<&'static Setting>,
    profile: Profile,
}

impl Env {
    /// The `INBOX_*` variables of this process, for a service that declares `lists`.
    pub fn from_process(lists: &[&[&'static Setting]]) -> Result<Self, SettingError> {
        Self::from_vars(
            std::env::vars().filter(|(k, _)| k.starts_with("INBOX_")),
            lists,
        )
    }

    /// An environment of the given variables (tests, tools).
    pub fn from_vars(
        vars: impl IntoIterator<Item = (String, String)>,
        lists: &[&[&'static Setting]],
    ) -> Result<Self, SettingError> {
        let mut declared: Vec<&'static Setting> = vec![&PROFILE];
        for list in lists {
            for s in *list {
                if !declared.iter().any(|d| d.name == s.name) {
                    declared.push(s);
                }
            }
        }
        let mut env = Self {
            vars: vars.into_iter().filter(|(_, v)| !v.is_empty()).collect(),
            declared,
            profile: Profile::Dev,
        };
        env.profile = match env.text(&PROFILE).as_str() {
            "dev" => Profile::Dev,
            "production" => Profile::Production,
            other => {
                return Err(env.error(&PROFILE, other, "expected `dev` or `production`"));
            }
        };
        Ok(env)
    }

    pub fn profile(&self) -> Profile {
        self.profile
    }

    pub fn is_production(&self) -> bool {
        self.profile == Profile::Production
    }

    fn check_declared(&self, s: &Setting) {
        debug_assert!(
            self.declared.iter().any(|d| d.name == s.name),
            "{} is read but not declared in this service's settings",
            s.name
        );
    }

    /// The variable's own value (set and not empty), without the default.
    pub fn raw(&self, s: &Setting) -> Option<&str> {
        self.check_declared(s);
        self.vars.get(s.name).map(String::as_str)
    }

    /// Whether the variable is set (not empty).
    pub fn is_set(&self, s: &Setting) -> bool {
        self.raw(s).is_some()
    }

    /// The value, else the default, else `None`.
    pub fn opt(&self, s: &Setting) -> Option<String> {
        self.raw(s).or(s.default).map(str::to_owned)
    }

    /// The value, else the default, else empty.
    pub fn text(&self, s: &Setting) -> String {
        self.opt(s).unwrap_or_default()
    }

    /// The value (or default) parsed; an error naming the variable when it does not parse or
    /// when neither is there.
    pub fn parse<T: FromStr>(&self, s: &Setting) -> Result<T, SettingError>
    where
        T::Err: fmt::Display,
    {
        self.opt_parse(s)?
            .ok_or_else(|| self.error(s, "", "required, and not set"))
    }

    /// The value (or default) parsed, `None` when neither is there.
    pub fn opt_parse<T: FromStr>(&self, s: &Setting) -> Result<Option<T>, SettingError>
    where
        T::Err: fmt::Display,
    {
        let Some(v) = self.opt(s) else {
            return Ok(None);
        };
        if let Kind::Choice(words) = s.kind
            && !words.contains(&v.as_str())
        {
            return Err(self.error(s, &v, format!("expected one of {}", words.join(", "))));
        }
        v.parse()
            .map(Some)
            .map_err(|e: T::Err| self.error(s, &v, e.to_string()))
    }

    /// A `true`/`false` setting (also `1`/`0`, `yes`/`no`, `on`/`off`).
    pub fn flag(&self, s: &Setting) -> Result<bool, SettingError> {
        let v = self.text(s);
        match v.to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" | "on" => Ok(true),
            "0" | "false" | "no" | "off" | "" => Ok(false),
            _ => Err(self.error(s, &v, "expected true or false")),
        }
    }

    /// A secret: never printed, never in `Debug`.
    pub fn secret(&self, s: &Setting) -> Option<SecretString> {
        debug_assert!(s.is_secret(), "{} is not declared secret", s.name);
        self.opt(s).map(SecretString::from)
    }

    /// An error about `s`; the value is masked when `s` is a secret.
    pub fn error(&self, s: &Setting, value: &str, reason: impl Into<String>) -> SettingError {
        SettingError {
            name: s.name.into(),
            value: if s.is_secret() && !value.is_empty() {
                "******".into()
            } else {
                value.into()
            },
            reason: reason.into(),
        }
    }

    /// Lookup of raw variables by name, for resolvers that merge a file with the environment
    /// (`communication`'s channels file).
    pub fn lookup(&self) -> impl Fn(&str) -> Option<String> + '_ {
        |name: &str| self.vars.get(name).cloned()
    }

    /// `INBOX_*` variables that no declaration of this service names (nor the dev scripts, see
    /// [`SCRIPT_VARIABLES`]): a typo such as `INBOX_JWKS_ULR` would otherwise be ignored in
    /// silence.
    pub fn undeclared(&self) -> Vec<&str> {
        self.vars
            .keys()
            .filter(|k| !self.declared.iter().any(|d| d.name == k.as_str()))
            .filter(|k| !is_script_variable(k) && !ENGINE_SETTINGS.contains(&k.as_str()))
            .map(String::as_str)
            .collect()
    }

    /// Every declared setting with its value and where it came from, secrets masked: the output
    /// of `--print-config`.
    pub fn report(&self) -> String {
        let mut out = String::new();
        let width = self
            .declared
            .iter()
            .map(|s| s.name.len())
            .max()
            .unwrap_or(0);
        for s in &self.declared {
            let (value, source) = match (self.vars.get(s.name), s.default) {
                (Some(v), _) => (shown(s, v), "env"),
                (None, Some(d)) => (shown(s, d), "default"),
                (None, None) => (String::new(), "unset"),
            };
            out.push_str(&format!(
                "{:<width$}  {:<8} {}\n",
                s.name,
                source,
                value,
                width = width
            ));
        }
        for name in self.undeclared() {
            out.push_str(&format!(
                "{name:<width$}  ignored  (not a setting of the engine)\n"
            ));
        }
        out
    }
}

/// How a value is printed: secrets as `******`, URL passwords masked.
fn shown(s: &Setting, v: &str) -> String {
    match s.kind {
        Kind::Secret => "******".into(),
        Kind::Url => mask_url_password(v),
        _ => v.to_owned(),
    }
}

/// `scheme://user:pw@host/...` with the password replaced by `******`.
pub fn mask_url_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:******@{host}{tail}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

/// The reasons a production start is refused, one line each; checked by every service after its
/// settings parse (see [`Refusals::enforce`]).
#[derive(Debug, Default)]
pub struct Refusals(Vec<String>);

impl Refusals {
    pub fn new() -> Self {
        Self::default()
    }

    /// Refuses with `reason` when `insecure` holds.
    pub fn check(&mut self, insecure: bool, reason: impl Into<String>) {
        if insecure {
            self.0.push(reason.into());
        }
    }

    pub fn lines(&self) -> &[String] {
        &self.0
    }

    /// Production: an error with every refusal when there is any. Dev: the warning banner.
    pub fn enforce(self, env: &Env, service: &str) -> Result<(), StartRefused> {
        match env.profile() {
            Profile::Production => {
                let mut lines = self.0;
                for name in env.undeclared() {
                    lines.push(format!(
                        "{name} is not a setting of the engine (a typo would be ignored in silence)"
                    ));
                }
                if lines.is_empty() {
                    Ok(())
                } else {
                    Err(StartRefused { lines })
                }
            }
            Profile::Dev => {
                tracing::warn!(
                    "{service} runs in the DEV profile: dev secrets and plain-text connections are \
                     accepted; never expose it. Set INBOX_PROFILE=production for a deployment"
                );
                if !self.0.is_empty() {
                    tracing::warn!(
                        "in production this configuration would be refused: {}",
                        self.0.join("; ")
                    );
                }
                for name in env.undeclared() {
                    tracing::warn!("{name} is not a setting of the engine: ignored");
                }
                Ok(())
            }
        }
    }
}

/// A production start refused: one line per reason.
#[derive(Debug, thiserror::Error)]
#[error("refusing to start in the production profile:\n  - {}", lines.join("\n  - "))]
pub struct StartRefused {
    pub lines: Vec<String>,
}

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

/// Secret values committed in this repository (`config/dev.env`, dev defaults): a production
/// start with any of them is refused. A test checks that every secret in `config/dev.env` is here.
pub const DEV_SECRETS: &[&str] = &[
    "dev-secret-change-me-0123456789abcdef",
    "dev-email-ref-secret-change-me-0123456789",
];

/// Whether `value` is one of the repository's dev secrets.
pub fn is_dev_secret(value: &str) -> bool {
    DEV_SECRETS.contains(&value)
}

/// The settings every service reads: the database, the broker and the identity provider.
pub mod common {
    use super::{Kind, Setting};

    pub static DATABASE_URL: Setting = Setting::new(
        "INBOX_DATABASE_URL",
        Kind::Url,
        "postgres://postgres@127.0.0.1:15432/inbox",
        "PostgreSQL URL; TLS with `?sslmode=verify-full&sslrootcert=<ca.pem>` (client certificate: `&sslcert=&sslkey=`)",
    );
    pub static DATABASE_PASSWORD: Setting = Setting::optional(
        "INBOX_DATABASE_PASSWORD",
        Kind::Secret,
        "PostgreSQL password, kept out of the URL (e.g. from a Kubernetes Secret)",
    );
    pub static DATABASE_MAX_CONNECTIONS: Setting = Setting::new(
        "INBOX_DATABASE_MAX_CONNECTIONS",
        Kind::Int,
        "20",
        "connection pool size per process",
    );
    pub static KAFKA_BROKERS: Setting = Setting::new(
        "INBOX_KAFKA_BROKERS",
        Kind::Text,
        "127.0.0.1:19093",
        "Kafka bootstrap servers, comma-separated",
    );
    pub static KAFKA_SECURITY_PROTOCOL: Setting = Setting::new(
        "INBOX_KAFKA_SECURITY_PROTOCOL",
        Kind::Choice(&["plaintext", "ssl", "sasl_plaintext", "sasl_ssl"]),
        "plaintext",
        "librdkafka `security.protocol`",
    );
    pub static KAFKA_CA_FILE: Setting = Setting::optional(
        "INBOX_KAFKA_CA_FILE",
        Kind::Path,
        "CA bundle (PEM) that signs the brokers' certificates (else the system roots)",
    );
    pub static KAFKA_CERT_FILE: Setting = Setting::optional(
        "INBOX_KAFKA_CERT_FILE",
        Kind::Path,
        "client certificate (PEM) for mutual TLS",
    );
    pub static KAFKA_KEY_FILE: Setting = Setting::optional(
        "INBOX_KAFKA_KEY_FILE",
        Kind::Path,
        "client key (PEM) for mutual TLS",
    );
    pub static KAFKA_SASL_MECHANISM: Setting = Setting::new(
        "INBOX_KAFKA_SASL_MECHANISM",
        Kind::Choice(&["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]),
        "SCRAM-SHA-512",
        "SASL mechanism with `sasl_*` protocols",
    );
    pub static KAFKA_SASL_USERNAME: Setting =
        Setting::optional("INBOX_KAFKA_SASL_USERNAME", Kind::Text, "SASL user name");
    pub static KAFKA_SASL_PASSWORD: Setting =
        Setting::optional("INBOX_KAFKA_SASL_PASSWORD", Kind::Secret, "SASL password");
    pub static KAFKA_PARTITIONS: Setting = Setting::new(
        "INBOX_KAFKA_PARTITIONS",
        Kind::Int,
        "12",
        "partitions of the topics the engine creates (bounds consumer parallelism)",
    );
    pub static KAFKA_REPLICATION: Setting = Setting::new(
        "INBOX_KAFKA_REPLICATION",
        Kind::Int,
        "3",
        "replication factor of the topics the engine creates",
    );
    pub static TOPIC_PREFIX: Setting = Setting::new(
        "INBOX_TOPIC_PREFIX",
        Kind::Text,
        "",
        "prefix of every topic name (tenants or tests sharing a broker)",
    );
    pub static JWT_SECRET: Setting = Setting::optional(
        "INBOX_JWT_SECRET",
        Kind::Secret,
        "dev only: HS256 secret of dev tokens (refused in production)",
    );
    pub static JWT_ISSUER: Setting = Setting::optional(
        "INBOX_JWT_ISSUER",
        Kind::Text,
        "required `iss` of tokens (production: the identity provider's issuer URL)",
    );
    pub static JWT_AUDIENCE: Setting = Setting::optional(
        "INBOX_JWT_AUDIENCE",
        Kind::Text,
        "required `aud` of tokens (required in production)",
    );
    pub static JWKS_URL: Setting = Setting::optional(
        "INBOX_JWKS_URL",
        Kind::Url,
        "the identity provider's JWKS (RS256/ES256 keys); Keycloak: `<realm>/protocol/openid-connect/certs`",
    );
    pub static JWKS_CA_FILE: Setting = Setting::optional(
        "INBOX_JWKS_CA_FILE",
        Kind::Path,
        "CA (PEM) trusted for the JWKS URL besides the system roots",
    );
    pub static JWKS_REFRESH_SECS: Setting = Setting::new(
        "INBOX_JWKS_REFRESH_SECS",
        Kind::Int,
        "300",
        "the key set is fetched again this often (a revoked key stops being trusted)",
    );
    pub static JWKS_MIN_REFRESH_SECS: Setting = Setting::new(
        "INBOX_JWKS_MIN_REFRESH_SECS",
        Kind::Int,
        "10",
        "at most one fetch per this many seconds for tokens of an unknown `kid`",
    );

    /// Declared by every service.
    pub static ALL: &[&Setting] = &[
        &DATABASE_URL,
        &DATABASE_PASSWORD,
        &DATABASE_MAX_CONNECTIONS,
        &KAFKA_BROKERS,
        &KAFKA_SECURITY_PROTOCOL,
        &KAFKA_CA_FILE,
        &KAFKA_CERT_FILE,
        &KAFKA_KEY_FILE,
        &KAFKA_SASL_MECHANISM,
        &KAFKA_SASL_USERNAME,
        &KAFKA_SASL_PASSWORD,
        &KAFKA_PARTITIONS,
        &KAFKA_REPLICATION,
        &TOPIC_PREFIX,
        &JWT_SECRET,
        &JWT_ISSUER,
        &JWT_AUDIENCE,
        &JWKS_URL,
        &JWKS_CA_FILE,
        &JWKS_REFRESH_SECS,
        &JWKS_MIN_REFRESH_SECS,
        &crate::shutdown::SHUTDOWN_SECS,
    ];
}

/// The Temporal frontend, for the services that talk to it (`gateway`, `workflow`).
pub mod temporal {
    use super::{Env, ExposeSecret, Kind, Refusals, SecretString, Setting, SettingError};

    pub static URL: Setting = Setting::new(
        "INBOX_TEMPORAL_URL",
        Kind::Url,
        "http://127.0.0.1:17240",
        "Temporal frontend; `https://` for TLS",
    );
    pub static NAMESPACE: Setting = Setting::new(
        "INBOX_TEMPORAL_NAMESPACE",
        Kind::Text,
        "default",
        "Temporal namespace",
    );
    pub static TASK_QUEUE: Setting = Setting::new(
        "INBOX_TASK_QUEUE",
        Kind::Text,
        "tickets",
        "task queue of the ticket workflows",
    );
    pub static CA_FILE: Setting = Setting::optional(
        "INBOX_TEMPORAL_CA_FILE",
        Kind::Path,
        "CA (PEM) of the frontend's certificate (else the system roots)",
    );
    pub static CERT_FILE: Setting = Setting::optional(
        "INBOX_TEMPORAL_CERT_FILE",
        Kind::Path,
        "client certificate (PEM) for mutual TLS",
    );
    pub static KEY_FILE: Setting = Setting::optional(
        "INBOX_TEMPORAL_KEY_FILE",
        Kind::Path,
        "client key (PEM) for mutual TLS",
    );
    pub static SERVER_NAME: Setting = Setting::optional(
        "INBOX_TEMPORAL_SERVER_NAME",
        Kind::Text,
        "TLS server name when it differs from the URL's host",
    );
    pub static API_KEY: Setting = Setting::optional(
        "INBOX_TEMPORAL_API_KEY",
        Kind::Secret,
        "API key (Temporal Cloud style, sent as `authorization: Bearer`); needs `https://`",
    );

    pub static ALL: &[&Setting] = &[
        &URL,
        &NAMESPACE,
        &TASK_QUEUE,
        &CA_FILE,
        &CERT_FILE,
        &KEY_FILE,
        &SERVER_NAME,
        &API_KEY,
    ];

    /// Where and how to reach Temporal.
    #[derive(Debug, Clone)]
    pub struct TemporalSettings {
        pub url: reqwest::Url,
        pub namespace: String,
        pub task_queue: String,
        pub ca_file: Option<std::path::PathBuf>,
        /// Client certificate and key (mutual TLS).
        pub client_cert: Option<(std::path::PathBuf, std::path::PathBuf)>,
        pub server_name: Option<String>,
        pub api_key: Option<SecretString>,
    }

    impl TemporalSettings {
        /// A plain-text frontend in the `default` namespace (tests, tools).
        pub fn plain(url: reqwest::Url, task_queue: &str) -> Self {
            Self {
                url,
                namespace: "default".into(),
                task_queue: task_queue.into(),
                ca_file: None,
                client_cert: None,
                server_name: None,
                api_key: None,
            }
        }

        pub fn from_env(env: &Env) -> Result<Self, SettingError> {
            let url: reqwest::Url = env.parse(&URL)?;
            let client_cert = match (env.opt(&CERT_FILE), env.opt(&KEY_FILE)) {
                (Some(c), Some(k)) => Some((c.into(), k.into())),
                (None, None) => None,
                (Some(_), None) => {
                    return Err(env.error(&KEY_FILE, "", "required with INBOX_TEMPORAL_CERT_FILE"));
                }
                (None, Some(_)) => {
                    return Err(env.error(&CERT_FILE, "", "required with INBOX_TEMPORAL_KEY_FILE"));
                }
            };
            let tls = url.scheme() == "https";
            if !tls && (client_cert.is_some() || env.is_set(&CA_FILE) || env.is_set(&API_KEY)) {
                return Err(env.error(
                    &URL,
                    url.as_str(),
                    "TLS settings (CA, client certificate, API key) need an https:// URL",
                ));
            }
            Ok(Self {
                url,
                namespace: env.text(&NAMESPACE),
                task_queue: env.text(&TASK_QUEUE),
                ca_file: env.opt(&CA_FILE).map(Into::into),
                client_cert,
                server_name: env.opt(&SERVER_NAME),
                api_key: env.secret(&API_KEY),
            })
        }

        pub fn refusals(&self, r: &mut Refusals) {
            r.check(
                self.url.scheme() != "https",
                format!(
                    "INBOX_TEMPORAL_URL={} is plain text: use https:// (TLS)",
                    self.url
                ),
            );
            r.check(
                self.api_key
                    .as_ref()
                    .is_some_and(|k| super::is_dev_secret(k.expose_secret())),
                "INBOX_TEMPORAL_API_KEY is a dev secret",
            );
        }
    }
}

/// The PostgreSQL connection settings.
#[derive(Debug, Clone)]
pub struct Database {
    pub url: String,
    pub password: Option<SecretString>,
    pub max_connections: u32,
}

impl Database {
    /// The password from its own secret, if set (it replaces the URL's).
    pub fn password(&self) -> Option<&str> {
        self.password.as_ref().map(ExposeSecret::expose_secret)
    }
}

/// Where the identity provider's keys are and how its tokens are checked.
#[derive(Debug, Clone)]
pub struct JwksSettings {
    pub url: reqwest::Url,
    pub issuer: String,
    pub audience: Option<String>,
    /// Trusted besides the system roots.
    pub ca_file: Option<std::path::PathBuf>,
    /// The key set is fetched again this often, so a key the IdP revoked stops being trusted.
    pub refresh: std::time::Duration,
    /// Fetches for unknown `kid`s are at most this frequent, so junk tokens cannot flood the IdP.
    pub min_refresh: std::time::Duration,
}

/// How tokens are verified.
#[derive(Debug, Clone)]
pub enum AuthSettings {
    /// Dev: HS256 with a shared secret.
    Hs256 {
        secret: SecretString,
        issuer: Option<String>,
    },
    /// The identity provider's keys.
    Jwks(JwksSettings),
}

/// Settings every service reads.
#[derive(Debug, Clone)]
pub struct Common {
    pub database: Database,
    pub kafka: crate::kafka::KafkaSettings,
    pub topic_prefix: String,
    pub auth: AuthSettings,
    /// How long a SIGTERM may take before the process exits anyway.
    pub shutdown_deadline: std::time::Duration,
}

impl Common {
    pub fn from_env(env: &Env) -> Result<Self, SettingError> {
        use common::*;
        let auth = match env.opt(&JWKS_URL) {
            Some(url) => AuthSettings::Jwks(JwksSettings {
                url: env.parse(&JWKS_URL)?,
                issuer: env.opt(&JWT_ISSUER).ok_or_else(|| {
                    env.error(
                        &JWT_ISSUER,
                        "",
                        format!("required with INBOX_JWKS_URL={url}"),
                    )
                })?,
                audience: env.opt(&JWT_AUDIENCE),
                ca_file: env.opt(&JWKS_CA_FILE).map(Into::into),
                refresh: std::time::Duration::from_secs(env.parse(&JWKS_REFRESH_SECS)?),
                min_refresh: std::time::Duration::from_secs(env.parse(&JWKS_MIN_REFRESH_SECS)?),
            }),
            None => match env.secret(&JWT_SECRET) {
                Some(secret) => AuthSettings::Hs256 {
                    secret,
                    issuer: env.opt(&JWT_ISSUER),
                },
                None => {
                    return Err(env.error(
                        &JWKS_URL,
                        "",
                        "no way to verify tokens: set INBOX_JWKS_URL (the identity provider's keys) \
                         or, in dev, INBOX_JWT_SECRET",
                    ));
                }
            },
        };
        Ok(Self {
            database: Database {
                url: env.text(&DATABASE_URL),
                password: env.secret(&DATABASE_PASSWORD),
                max_connections: env.parse(&DATABASE_MAX_CONNECTIONS)?,
            },
            kafka: crate::kafka::KafkaSettings::from_env(env)?,
            topic_prefix: env.text(&TOPIC_PREFIX),
            auth,
            shutdown_deadline: std::time::Duration::from_secs(
                env.parse(&crate::shutdown::SHUTDOWN_SECS)?,
            ),
        })
    }

    /// What the production profile refuses in these settings.
    pub fn refusals(&self, r: &mut Refusals) {
        match &self.auth {
            AuthSettings::Hs256 { secret, .. } => {
                r.check(
                    true,
                    "INBOX_JWKS_URL is not set: production verifies tokens only with the identity \
                     provider's keys (RS256/ES256)",
                );
                r.check(
                    is_dev_secret(secret.expose_secret()),
                    "INBOX_JWT_SECRET is the dev secret committed in the repository",
                );
            }
            AuthSettings::Jwks(j) => {
                r.check(
                    j.url.scheme() != "https",
                    format!("INBOX_JWKS_URL={} is not https://", j.url),
                );
                r.check(
                    j.audience.is_none(),
                    "INBOX_JWT_AUDIENCE is not set: tokens issued for another application would be accepted",
                );
            }
        }
        r.check(
            !database_url_verifies_tls(&self.database.url),
            "INBOX_DATABASE_URL does not verify TLS: add `sslmode=verify-full` and `sslrootcert=<ca.pem>`",
        );
        self.kafka.refusals(r);
    }

    pub fn topics(&self) -> crate::kafka::Topics {
        crate::kafka::Topics::with_prefix(&self.topic_prefix)
    }
}

/// Whether a libpq URL asks for a verified TLS connection (`sslmode=verify-full`).
pub fn database_url_verifies_tls(url: &str) -> bool {
    url.split_once('?').is_some_and(|(_, query)| {
        query
            .split('&')
            .any(|kv| kv.eq_ignore_ascii_case("sslmode=verify-full"))
    })
}

/// A service's settings could not be loaded, or the profile refuses them: the whole message.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct LoadError(String);

/// What a service's `main` does after loading its settings.
pub enum Start<S> {
    /// Run with these settings.
    Run(S),
    /// `--print-config` printed the settings and the verdict: exit now.
    Printed,
}

/// Loads a service's settings from the process environment: parses every value (`build`),
/// applies the profile (`refusals`: the production refusals; dev prints its banner) and, with
/// `--print-config` among the arguments, prints every declared setting with its source, secrets
/// masked, then the verdict.
pub fn load<S, E: fmt::Display>(
    service: &str,
    lists: &[&[&'static Setting]],
    build: impl FnOnce(&Env) -> Result<S, E>,
    refusals: impl FnOnce(&S, &Env) -> Refusals,
) -> Result<Start<S>, LoadError> {
    let print = std::env::args().skip(1).any(|a| a == "--print-config");
    let env = Env::from_process(lists).map_err(|e| LoadError(format!("{service}: {e}")))?;
    if print {
        print!("{}", env.report());
    }
    let settings = build(&env).map_err(|e| LoadError(format!("{service}: {e}")))?;
    refusals(&settings, &env)
        .enforce(&env, service)
        .map_err(|e| LoadError(format!("{service}: {e}")))?;
    if print {
        println!("# {service}: accepted in the {:?} profile", env.profile());
        return Ok(Start::Printed);
    }
    Ok(Start::Run(settings))
}

#[cfg(test)]
mod tests {
    use super::*;

    static PORT: Setting = Setting::new("INBOX_T_PORT", Kind::Int, "80", "a port");
    static KEY: Setting = Setting::optional("INBOX_T_KEY", Kind::Secret, "a key");
    static MODE: Setting = Setting::new("INBOX_T_MODE", Kind::Choice(&["a", "b"]), "a", "mode");
    static LIST: &[&Setting] = &[&PORT, &KEY, &MODE];

    fn env(vars: &[(&str, &str)]) -> Result<Env, SettingError> {
        Env::from_vars(
            vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
            &[LIST],
        )
    }

    #[test]
    fn a_bad_value_is_an_error_naming_the_variable_not_a_silent_default() -> anyhow::Result<()> {
        let e = env(&[("INBOX_T_PORT", "eighty")])?;
        let err = e.parse::<u16>(&PORT).err().map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some("setting INBOX_T_PORT=\"eighty\": invalid digit found in string")
        );
        assert_eq!(env(&[])?.parse::<u16>(&PORT)?, 80);
        let bad_choice = env(&[("INBOX_T_MODE", "c")])?.parse::<String>(&MODE);
        assert!(bad_choice.is_err_and(|e| e.reason == "expected one of a, b"));
        assert!(env(&[("INBOX_PROFILE", "prod")]).is_err());
        Ok(())
    }

    #[test]
    fn secrets_never_print_in_the_report_errors_or_debug() -> anyhow::Result<()> {
        let e = env(&[("INBOX_T_KEY", "hunter2"), ("INBOX_TYPO", "x")])?;
        let report = e.report();
        assert!(!report.contains("hunter2"), "{report}");
        assert!(report.contains("INBOX_T_KEY") && report.contains("******"));
        assert!(report.contains("INBOX_TYPO") && report.contains("ignored"));
        let secret = e.secret(&KEY).map(|s| format!("{s:?}")).unwrap_or_default();
        assert!(!secret.contains("hunter2"), "{secret}");
        assert!(
            !e.error(&KEY, "hunter2", "bad")
                .to_string()
                .contains("hunter2")
        );
        assert_eq!(e.undeclared(), vec!["INBOX_TYPO"]);
        Ok(())
    }

    #[test]
    fn url_passwords_are_masked() {
        assert_eq!(
            mask_url_password("postgres://inbox:s3cret@db:5432/inbox?sslmode=verify-full"),
            "postgres://inbox:******@db:5432/inbox?sslmode=verify-full"
        );
        assert_eq!(
            mask_url_password("postgres://postgres@127.0.0.1/inbox"),
            "postgres://postgres@127.0.0.1/inbox"
        );
    }

    #[test]
    fn production_refuses_each_insecure_common_setting_with_its_own_line() -> anyhow::Result<()> {
        let dev_box = [
            ("INBOX_PROFILE", "production"),
            ("INBOX_JWT_SECRET", DEV_SECRETS[0]),
        ];
        let e = Env::from_vars(
            dev_box
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
            &[common::ALL],
        )?;
        let mut r = Refusals::new();
        Common::from_env(&e)?.refusals(&mut r);
        let text = r.lines().join("\n");
        for needle in [
            "INBOX_JWKS_URL is not set",
            "INBOX_JWT_SECRET is the dev secret",
            "INBOX_DATABASE_URL does not verify TLS",
            "INBOX_KAFKA_SECURITY_PROTOCOL=plaintext",
        ] {
            assert!(text.contains(needle), "{needle:?} missing from:\n{text}");
        }
        assert!(r.enforce(&e, "test").is_err());
        Ok(())
    }

    #[test]
    fn without_a_jwks_or_a_secret_no_service_starts() -> anyhow::Result<()> {
        let e = env(&[])?;
        let e = Env::from_vars(e.vars.clone(), &[common::ALL])?;
        let err = Common::from_env(&e)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("no way to verify tokens"), "{err}");
        Ok(())
    }
}
