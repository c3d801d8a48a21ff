//! The settings every service reads: the database, the broker and the identity provider.
//! And the values they make: [`Common`] ([`Database`], the broker, [`AuthSettings`]).

use super::{
    Env, ExposeSecret, Kind, Refusals, SecretString, Setting, SettingError, is_dev_secret,
};

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
pub static DATA_KEY: Setting = Setting::optional(
    "INBOX_DATA_KEY",
    Kind::Secret,
    "AES-256 key (64 hex digits) sealing message bodies on Kafka and the audit copy of a blocked message (`openssl rand -hex 32`; required in production)",
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
    &DATA_KEY,
    &crate::shutdown::SHUTDOWN_SECS,
];

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
    /// Seals message bodies on Kafka and the audit copy of blocked messages; None: bodies travel
    /// in clear and no audit copy is kept (dev only).
    pub data_key: Option<crate::seal::SealKey>,
    /// Whether `data_key` is the dev key committed in the repository.
    data_key_is_dev: bool,
}

impl Common {
    pub fn from_env(env: &Env) -> Result<Self, SettingError> {
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
        let data_key_text = env.secret(&DATA_KEY);
        let data_key = data_key_text
            .as_ref()
            .map(|k| {
                crate::seal::SealKey::from_hex(k.expose_secret())
                    .map_err(|e| env.error(&DATA_KEY, k.expose_secret(), e.to_string()))
            })
            .transpose()?;
        Ok(Self {
            data_key,
            data_key_is_dev: data_key_text
                .as_ref()
                .is_some_and(|k| is_dev_secret(k.expose_secret())),
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
            self.data_key.is_none(),
            "INBOX_DATA_KEY is not set: message bodies would travel on Kafka in clear and blocked card data could not be sealed for audit",
        );
        r.check(
            self.data_key_is_dev,
            "INBOX_DATA_KEY is the dev key committed in the repository",
        );
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
