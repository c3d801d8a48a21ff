//! Bearer JWTs in the Keycloak layout: the user id is `sub`, roles are `realm_access.roles`, the
//! display name is `name` or else `preferred_username`. Dev mode verifies HS256 with a shared secret;
//! production verifies RS256/ES256 against the identity provider's JWKS (Keycloak:
//! `<realm url>/protocol/openid-connect/certs`), keys cached and fetched again on an unknown `kid`.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
pub use platform::settings::JwksSettings;
use platform::settings::{AuthSettings, ExposeSecret};
use serde::{Deserialize, Serialize};
use tickets::{Caller, Role};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("missing bearer token")]
    Missing,
    #[error("invalid token: {0}")]
    Invalid(String),
    #[error("token has no `sub`")]
    NoSubject,
    #[error("this operation needs role `{0}`")]
    Forbidden(&'static str),
    /// The identity provider's keys could not be fetched.
    #[error("cannot verify tokens now: {0}")]
    Unavailable(String),
    /// A verified token whose identity claims the engine cannot take (`sub` too long or with
    /// control characters, a display name with a NUL...): the caller gets a 400 /
    /// `INVALID_ARGUMENT`, never a record that can never be processed downstream.
    #[error("token claim `{claim}`: {reason}")]
    BadClaim { claim: &'static str, reason: String },
    /// The JWKS client could not be built (a CA file that does not read or parse).
    #[error("JWKS client: {0}")]
    Setup(String),
}

/// Longest `sub` taken (bytes): a client id becomes part of a Temporal workflow id (at most
/// 1,000 bytes) and of Kafka keys and database keys; IdPs' subjects are UUIDs or short ids.
pub const MAX_SUBJECT_BYTES: usize = 255;
/// Longest display name kept (characters; a longer one is cut).
pub const MAX_NAME_CHARS: usize = 200;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RealmAccess {
    #[serde(default)]
    pub roles: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub exp: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preferred_username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub realm_access: Option<RealmAccess>,
}

/// A verified token: who calls, and until when the token is good (streams end then).
#[derive(Debug, Clone)]
pub struct Verified {
    pub caller: Caller,
    /// The token's `iss` (empty when it has none: a dev token without an issuer).
    pub issuer: String,
    /// `exp`, seconds since the epoch.
    pub expires_at: i64,
}

impl Verified {
    /// How long until the token expires (zero when it already has).
    pub fn remaining(&self) -> Duration {
        let left = self.expires_at - chrono::Utc::now().timestamp();
        Duration::from_secs(u64::try_from(left).unwrap_or(0))
    }
}

/// Verifies tokens and turns them into a [`Caller`].
#[derive(Clone)]
pub struct Verifier {
    key: DecodingKey,
    validation: Validation,
    jwks: Option<Arc<Jwks>>,
}

/// Signing algorithms accepted from a JWKS: never `none`, never a shared-secret HMAC.
const JWKS_ALGORITHMS: [Algorithm; 2] = [Algorithm::RS256, Algorithm::ES256];

/// The identity provider's public keys by `kid`, and how to check its tokens.
pub struct Jwks {
    url: reqwest::Url,
    issuer: String,
    audience: Option<String>,
    refresh_every: Duration,
    /// Fetches for unknown `kid`s are at most this frequent, so junk tokens cannot flood the IdP.
    min_refresh: Duration,
    http: reqwest::Client,
    keys: RwLock<HashMap<String, (DecodingKey, Algorithm)>>,
    last_refresh: tokio::sync::Mutex<Option<Instant>>,
}

impl Jwks {
    fn validation(&self, alg: Algorithm) -> Validation {
        let mut v = Validation::new(alg);
        v.leeway = 5;
        v.validate_nbf = true;
        v.set_issuer(&[&self.issuer]);
        match &self.audience {
            Some(aud) => v.set_audience(&[aud]),
            None => v.validate_aud = false,
        }
        v.set_required_spec_claims(&["exp", "sub", "iss"]);
        v
    }

    /// `Ok(None)` when the token names a key not in the cache.
    fn verify_cached(&self, token: &str) -> Result<Option<Verified>, AuthError> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| AuthError::Invalid(e.to_string()))?;
        if !JWKS_ALGORITHMS.contains(&header.alg) {
            return Err(AuthError::Invalid(format!(
                "algorithm {:?} is not accepted",
                header.alg
            )));
        }
        let kid = header
            .kid
            .ok_or_else(|| AuthError::Invalid("token has no `kid`".into()))?;
        let keys = self
            .keys
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some((key, alg)) = keys.get(&kid) else {
            return Ok(None);
        };
        if *alg != header.alg {
            return Err(AuthError::Invalid(
                "algorithm does not match the key".into(),
            ));
        }
        let data = jsonwebtoken::decode::<Claims>(token, key, &self.validation(*alg))
            .map_err(|e| AuthError::Invalid(e.to_string()))?;
        verified(data.claims).map(Some)
    }

    /// Fetches the key set for a token of an unknown `kid`, at most once per `min_refresh`.
    async fn refresh_for_unknown_kid(&self) -> Result<(), AuthError> {
        let mut last = self.last_refresh.lock().await;
        if last.is_some_and(|t| t.elapsed() < self.min_refresh) {
            return Ok(());
        }
        *last = Some(Instant::now());
        self.fetch().await
    }

    /// Replaces the cached keys with the identity provider's current set.
    async fn fetch(&self) -> Result<(), AuthError> {
        let set: jsonwebtoken::jwk::JwkSet = self
            .http
            .get(self.url.clone())
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| AuthError::Unavailable(format!("fetching the JWKS: {e}")))?
            .json()
            .await
            .map_err(|e| AuthError::Unavailable(format!("reading the JWKS: {e}")))?;
        let mut keys = HashMap::new();
        for jwk in &set.keys {
            use jsonwebtoken::jwk::{
                AlgorithmParameters, EllipticCurve, KeyAlgorithm, PublicKeyUse,
            };
            if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
                continue;
            }
            let alg = match (&jwk.common.key_algorithm, &jwk.algorithm) {
                (Some(KeyAlgorithm::RS256), AlgorithmParameters::RSA(_)) => Algorithm::RS256,
                (Some(KeyAlgorithm::ES256), AlgorithmParameters::EllipticCurve(p))
                    if p.curve == EllipticCurve::P256 =>
                {
                    Algorithm::ES256
                }
                (None, AlgorithmParameters::RSA(_)) => Algorithm::RS256,
                (None, AlgorithmParameters::EllipticCurve(p)) if p.curve == EllipticCurve::P256 => {
                    Algorithm::ES256
                }
                _ => continue,
            };
            let (Some(kid), Ok(key)) = (&jwk.common.key_id, DecodingKey::from_jwk(jwk)) else {
                continue;
            };
            keys.insert(kid.clone(), (key, alg));
        }
        tracing::info!(url = %self.url, keys = keys.len(), "JWKS refreshed");
        *self
            .keys
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = keys;
        Ok(())
    }
}

impl Verifier {
    /// The verifier the settings ask for: the identity provider's keys, or (dev) a shared secret.
    pub fn from_settings(s: &AuthSettings) -> Result<Self, AuthError> {
        match s {
            AuthSettings::Jwks(j) => Self::jwks(j),
            AuthSettings::Hs256 { secret, issuer } => Ok(Self::hs256(
                secret.expose_secret().as_bytes(),
                issuer.as_deref(),
            )),
        }
    }

    /// Dev mode: HS256 with a shared secret, issuer checked when one is configured.
    pub fn hs256(secret: &[u8], issuer: Option<&str>) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 5;
        validation.validate_aud = false;
        if let Some(iss) = issuer {
            validation.set_issuer(&[iss]);
        }
        validation.set_required_spec_claims(&["exp", "sub"]);
        Self {
            key: DecodingKey::from_secret(secret),
            validation,
            jwks: None,
        }
    }

    /// Production: RS256/ES256 tokens signed by a key of the identity provider's JWKS, from its
    /// issuer, for the audience when one is set. Keys are fetched by [`Self::start`], again on an
    /// unknown `kid` (at most once per `min_refresh`) and every `refresh`.
    pub fn jwks(s: &JwksSettings) -> Result<Self, AuthError> {
        let mut http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .connect_timeout(Duration::from_secs(5))
            .https_only(s.url.scheme() == "https");
        if let Some(ca) = &s.ca_file {
            let pem = std::fs::read(ca)
                .map_err(|e| AuthError::Setup(format!("reading {}: {e}", ca.display())))?;
            for cert in reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| AuthError::Setup(format!("{}: {e}", ca.display())))?
            {
                http = http.add_root_certificate(cert);
            }
        }
        let http = http.build().map_err(|e| AuthError::Setup(e.to_string()))?;
        Ok(Self {
            key: DecodingKey::from_secret(&[]),
            validation: Validation::new(Algorithm::RS256),
            jwks: Some(Arc::new(Jwks {
                url: s.url.clone(),
                issuer: s.issuer.clone(),
                audience: s.audience.clone(),
                refresh_every: s.refresh,
                min_refresh: s.min_refresh,
                http,
                keys: RwLock::new(HashMap::new()),
                last_refresh: tokio::sync::Mutex::new(None),
            })),
        })
    }

    /// With a JWKS: fetches the keys now (an error is logged, and tokens fetch again) and keeps
    /// them fresh every `refresh` until `stop`, so a key removed from the set stops verifying.
    pub async fn start(&self, stop: tokio_util::sync::CancellationToken) {
        let Some(jwks) = self.jwks.clone() else {
            return;
        };
        if let Err(e) = jwks.fetch().await {
            tracing::error!(error = %e, url = %jwks.url, "cannot fetch the identity provider's keys at start");
        }
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(jwks.refresh_every.max(Duration::from_secs(1)));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tick.tick() => {}
                }
                if let Err(e) = jwks.fetch().await {
                    // The keys at hand stay: an IdP outage must not log everyone out.
                    tracing::warn!(error = %e, "scheduled JWKS refresh failed; keeping the current keys");
                }
            }
        });
    }

    /// Verifies with the keys at hand; with a JWKS, a token of a key not fetched yet fails (use
    /// [`Self::verify_async`] where the caller can await).
    pub fn verify(&self, token: &str) -> Result<Caller, AuthError> {
        self.verify_token(token).map(|v| v.caller)
    }

    /// [`Self::verify`] with the token's expiry.
    pub fn verify_token(&self, token: &str) -> Result<Verified, AuthError> {
        if let Some(jwks) = &self.jwks {
            return jwks
                .verify_cached(token)?
                .ok_or_else(|| AuthError::Invalid("token signed by an unknown key".into()));
        }
        let data = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation)
            .map_err(|e| AuthError::Invalid(e.to_string()))?;
        verified(data.claims)
    }

    /// Verifies the value of an `Authorization` header (`Bearer <token>`).
    pub fn verify_header(&self, header: Option<&str>) -> Result<Caller, AuthError> {
        self.verify(bearer(header)?)
    }

    /// Like [`Self::verify`]; with a JWKS it may fetch the key set (a token signed with a key
    /// not seen yet), so servers that can await call this one.
    pub async fn verify_async(&self, token: &str) -> Result<Caller, AuthError> {
        self.verify_token_async(token).await.map(|v| v.caller)
    }

    /// [`Self::verify_async`] with the token's expiry.
    pub async fn verify_token_async(&self, token: &str) -> Result<Verified, AuthError> {
        let Some(jwks) = &self.jwks else {
            return self.verify_token(token);
        };
        if let Some(c) = jwks.verify_cached(token)? {
            return Ok(c);
        }
        jwks.refresh_for_unknown_kid().await?;
        jwks.verify_cached(token)?
            .ok_or_else(|| AuthError::Invalid("token signed by an unknown key".into()))
    }

    /// Like [`Self::verify_header`], fetching keys when needed.
    pub async fn verify_header_async(&self, header: Option<&str>) -> Result<Caller, AuthError> {
        self.verify_async(bearer(header)?).await
    }

    /// [`Self::verify_header_async`] with the token's expiry.
    pub async fn verify_header_token_async(
        &self,
        header: Option<&str>,
    ) -> Result<Verified, AuthError> {
        self.verify_token_async(bearer(header)?).await
    }
}

fn bearer(header: Option<&str>) -> Result<&str, AuthError> {
    let value = header.ok_or(AuthError::Missing)?;
    value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .map(str::trim)
        .ok_or_else(|| AuthError::Invalid("expected `Bearer <token>`".into()))
}

/// Rejects identity claims the engine could not carry (see [`AuthError::BadClaim`]).
fn check_claim(claim: &'static str, value: &str, max_bytes: usize) -> Result<(), AuthError> {
    if value.len() > max_bytes {
        return Err(AuthError::BadClaim {
            claim,
            reason: format!("longer than {max_bytes} bytes"),
        });
    }
    if value.chars().any(char::is_control) {
        return Err(AuthError::BadClaim {
            claim,
            reason: "contains control characters".into(),
        });
    }
    Ok(())
}

fn verified(c: Claims) -> Result<Verified, AuthError> {
    let expires_at = c.exp;
    let issuer = c.iss.clone().unwrap_or_default();
    caller_of(c).map(|caller| Verified {
        caller,
        issuer,
        expires_at,
    })
}

fn caller_of(c: Claims) -> Result<Caller, AuthError> {
    if c.sub.trim().is_empty() {
        return Err(AuthError::NoSubject);
    }
    check_claim("sub", &c.sub, MAX_SUBJECT_BYTES)?;
    // Names are for display: one with control characters (a NUL cannot even be stored) is
    // refused, a long one is cut to MAX_NAME_CHARS rather than refused.
    for (claim, v) in [
        ("name", &c.name),
        ("preferred_username", &c.preferred_username),
    ] {
        if let Some(v) = v
            && v.chars().any(char::is_control)
        {
            return Err(AuthError::BadClaim {
                claim,
                reason: "contains control characters".into(),
            });
        }
    }
    let roles = c
        .realm_access
        .map(|r| r.roles.iter().filter_map(|s| Role::parse(s)).collect())
        .unwrap_or_default();
    let display_name = c
        .name
        .filter(|n| !n.trim().is_empty())
        .or(c.preferred_username.filter(|n| !n.trim().is_empty()))
        .unwrap_or_else(|| c.sub.clone())
        .chars()
        .take(MAX_NAME_CHARS)
        .collect();
    Ok(Caller {
        user_id: c.sub,
        roles,
        display_name,
    })
}

/// Requires `role` of the caller.
pub fn require(caller: &Caller, role: Role) -> Result<(), AuthError> {
    if caller.has_role(role) {
        Ok(())
    } else {
        Err(AuthError::Forbidden(role.as_str()))
    }
}

/// Issues a dev token (HS256). Used by `make token` and by tests.
pub fn issue_dev_token(
    secret: &[u8],
    issuer: &str,
    user: &str,
    name: Option<&str>,
    roles: &[Role],
    ttl_secs: i64,
) -> Result<String, AuthError> {
    let now = chrono::Utc::now().timestamp();
    let claims = Claims {
        sub: user.to_owned(),
        exp: now + ttl_secs,
        iat: Some(now),
        iss: Some(issuer.to_owned()),
        name: name.map(str::to_owned),
        preferred_username: Some(user.to_owned()),
        realm_access: Some(RealmAccess {
            roles: roles.iter().map(|r| r.as_str().to_owned()).collect(),
        }),
    };
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret),
    )
    .map_err(|e| AuthError::Invalid(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"test-secret";

    #[test]
    fn a_dev_token_round_trips_into_a_caller_with_roles_and_name() -> Result<(), AuthError> {
        let t = issue_dev_token(
            SECRET,
            "iss",
            "alice",
            Some("Alice A."),
            &[Role::Manager],
            60,
        )?;
        let c = Verifier::hs256(SECRET, Some("iss")).verify(&t)?;
        assert_eq!(c.user_id, "alice");
        assert_eq!(c.display_name, "Alice A.");
        assert!(c.has_role(Role::Manager) && !c.has_role(Role::Client));
        Ok(())
    }

    #[test]
    fn expired_wrong_key_wrong_issuer_and_alg_none_tokens_are_rejected() -> Result<(), AuthError> {
        let v = Verifier::hs256(SECRET, Some("iss"));
        let expired = issue_dev_token(SECRET, "iss", "a", None, &[Role::Client], -600)?;
        assert!(matches!(v.verify(&expired), Err(AuthError::Invalid(_))));
        let other_key = issue_dev_token(b"other", "iss", "a", None, &[Role::Client], 60)?;
        assert!(matches!(v.verify(&other_key), Err(AuthError::Invalid(_))));
        let other_iss = issue_dev_token(SECRET, "evil", "a", None, &[Role::Client], 60)?;
        assert!(matches!(v.verify(&other_iss), Err(AuthError::Invalid(_))));
        // {"alg":"none"} with a valid-looking payload and no signature.
        let none = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJhIiwiZXhwIjo5OTk5OTk5OTk5fQ.";
        assert!(matches!(v.verify(none), Err(AuthError::Invalid(_))));
        assert_eq!(v.verify_header(None), Err(AuthError::Missing));
        Ok(())
    }

    #[test]
    fn identity_claims_the_engine_cannot_carry_are_a_bad_claim_not_a_caller()
    -> Result<(), AuthError> {
        let v = Verifier::hs256(SECRET, None);
        let long = issue_dev_token(SECRET, "iss", &"x".repeat(256), None, &[Role::Client], 60)?;
        assert!(matches!(
            v.verify(&long),
            Err(AuthError::BadClaim { claim: "sub", .. })
        ));
        let nul = issue_dev_token(SECRET, "iss", "ivan", Some("Iv\0an"), &[Role::Client], 60)?;
        assert!(matches!(
            v.verify(&nul),
            Err(AuthError::BadClaim { claim: "name", .. })
        ));
        let ctl = issue_dev_token(SECRET, "iss", "tg:1\n2", None, &[Role::Client], 60)?;
        assert!(matches!(
            v.verify(&ctl),
            Err(AuthError::BadClaim { claim: "sub", .. })
        ));
        let fine = issue_dev_token(
            SECRET,
            "iss",
            &"x".repeat(255),
            Some("Иван"),
            &[Role::Client],
            60,
        )?;
        assert_eq!(v.verify(&fine)?.display_name, "Иван");
        let wordy = issue_dev_token(
            SECRET,
            "iss",
            "ivan",
            Some(&"я".repeat(500)),
            &[Role::Client],
            60,
        )?;
        assert_eq!(
            v.verify(&wordy)?.display_name.chars().count(),
            MAX_NAME_CHARS
        );
        Ok(())
    }

    #[test]
    fn preferred_username_is_the_name_when_name_is_missing() -> Result<(), AuthError> {
        let t = issue_dev_token(SECRET, "iss", "bob", None, &[Role::Client], 60)?;
        assert_eq!(
            Verifier::hs256(SECRET, None).verify(&t)?.display_name,
            "bob"
        );
        Ok(())
    }
}
