//! Settings from the environment (`INBOX_*`), with defaults that run against `make run`'s stack.

use std::str::FromStr;

#[derive(Debug, thiserror::Error)]
#[error("setting {name}={value:?}: {reason}")]
pub struct SettingError {
    pub name: String,
    pub value: String,
    pub reason: String,
}

/// The value of `name`, or `default` when unset.
pub fn var(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

/// The parsed value of `name`, or `default` when unset.
pub fn parse<T: FromStr>(name: &str, default: T) -> Result<T, SettingError>
where
    T::Err: std::fmt::Display,
{
    match std::env::var(name) {
        Err(_) => Ok(default),
        Ok(v) => v.parse().map_err(|e: T::Err| SettingError {
            name: name.to_owned(),
            value: v.clone(),
            reason: e.to_string(),
        }),
    }
}

/// Settings every service reads.
#[derive(Debug, Clone)]
pub struct Common {
    pub database_url: String,
    pub kafka_brokers: String,
    pub topic_prefix: String,
    pub jwt_secret: String,
    pub jwt_issuer: Option<String>,
    /// Production: the identity provider's JWKS (RS256/ES256); unset = dev HS256 with the secret.
    pub jwks_url: Option<String>,
    /// Required `aud` of JWKS-verified tokens, when set.
    pub jwt_audience: Option<String>,
}

impl Common {
    pub fn from_env() -> Self {
        Self {
            database_url: var(
                "INBOX_DATABASE_URL",
                "postgres://postgres@127.0.0.1:15432/inbox",
            ),
            kafka_brokers: var("INBOX_KAFKA_BROKERS", "127.0.0.1:19093"),
            topic_prefix: var("INBOX_TOPIC_PREFIX", ""),
            jwt_secret: var("INBOX_JWT_SECRET", "dev-secret-change-me-0123456789abcdef"),
            jwt_issuer: std::env::var("INBOX_JWT_ISSUER")
                .ok()
                .filter(|s| !s.is_empty()),
            jwks_url: std::env::var("INBOX_JWKS_URL")
                .ok()
                .filter(|s| !s.is_empty()),
            jwt_audience: std::env::var("INBOX_JWT_AUDIENCE")
                .ok()
                .filter(|s| !s.is_empty()),
        }
    }

    pub fn topics(&self) -> crate::kafka::Topics {
        crate::kafka::Topics::with_prefix(&self.topic_prefix)
    }

    pub fn verifier(&self) -> crate::auth::Verifier {
        match &self.jwks_url {
            Some(url) => crate::auth::Verifier::jwks(
                url,
                self.jwt_issuer.as_deref().unwrap_or_default(),
                self.jwt_audience.as_deref(),
                std::time::Duration::from_secs(10),
            ),
            None => {
                crate::auth::Verifier::hs256(self.jwt_secret.as_bytes(), self.jwt_issuer.as_deref())
            }
        }
    }
}
