//! The Temporal frontend, for the services that talk to it (`gateway`, `workflow`).

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
