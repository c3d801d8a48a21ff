//! Bearer JWTs in the Keycloak layout: the user id is `sub`, roles are `realm_access.roles`, the
//! display name is `name` or else `preferred_username`. Dev mode verifies HS256 with a shared secret;
//! production verifies RS256/ES256 against the identity provider's JWKS (Keycloak:
//! `<realm url>/protocol/openid-connect/certs`), keys cached and fetched again on an unknown `kid`.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
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
}

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
    url: String,
    issuer: String,
    audience: Option<String>,
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
    fn verify_cached(&self, token: &str) -> Result<Option<Caller>, AuthError> {
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
        caller_of(data.claims).map(Some)
    }

    async fn refresh(&self) -> Result<(), AuthError> {
        let mut last = self.last_refresh.lock().await;
        if last.is_some_and(|t| t.elapsed() < self.min_refresh) {
            return Ok(());
        }
        *last = Some(Instant::now());
        let set: jsonwebtoken::jwk::JwkSet = self
            .http
            .get(&self.url)
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

    /// Production: RS256/ES256 tokens signed by a key of the JWKS at `url`, from `issuer`, for
    /// `audience` when given. Keys are fetched at the first token and again on an unknown `kid`
    /// (at most once per `min_refresh`).
    pub fn jwks(url: &str, issuer: &str, audience: Option<&str>, min_refresh: Duration) -> Self {
        Self {
            key: DecodingKey::from_secret(&[]),
            validation: Validation::new(Algorithm::RS256),
            jwks: Some(Arc::new(Jwks {
                url: url.to_owned(),
                issuer: issuer.to_owned(),
                audience: audience.map(str::to_owned),
                min_refresh,
                http: reqwest::Client::builder()
                    .timeout(Duration::from_secs(10))
                    .build()
                    .unwrap_or_default(),
                keys: RwLock::new(HashMap::new()),
                last_refresh: tokio::sync::Mutex::new(None),
            })),
        }
    }

    /// Verifies with the keys at hand; with a JWKS, a token of a key not fetched yet fails (use
    /// [`Self::verify_async`] where the caller can await).
    pub fn verify(&self, token: &str) -> Result<Caller, AuthError> {
        if let Some(jwks) = &self.jwks {
            return jwks
                .verify_cached(token)?
                .ok_or_else(|| AuthError::Invalid("token signed by an unknown key".into()));
        }
        let data = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation)
            .map_err(|e| AuthError::Invalid(e.to_string()))?;
        caller_of(data.claims)
    }

    /// Verifies the value of an `Authorization` header (`Bearer <token>`).
    pub fn verify_header(&self, header: Option<&str>) -> Result<Caller, AuthError> {
        self.verify(bearer(header)?)
    }

    /// Like [`Self::verify`]; with a JWKS it may fetch the key set (a token signed with a key
    /// not seen yet), so servers that can await call this one.
    pub async fn verify_async(&self, token: &str) -> Result<Caller, AuthError> {
        let Some(jwks) = &self.jwks else {
            return self.verify(token);
        };
        if let Some(c) = jwks.verify_cached(token)? {
            return Ok(c);
        }
        jwks.refresh().await?;
        jwks.verify_cached(token)?
            .ok_or_else(|| AuthError::Invalid("token signed by an unknown key".into()))
    }

    /// Like [`Self::verify_header`], fetching keys when needed.
    pub async fn verify_header_async(&self, header: Option<&str>) -> Result<Caller, AuthError> {
        self.verify_async(bearer(header)?).await
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

fn caller_of(c: Claims) -> Result<Caller, AuthError> {
    if c.sub.trim().is_empty() {
        return Err(AuthError::NoSubject);
    }
    let roles = c
        .realm_access
        .map(|r| r.roles.iter().filter_map(|s| Role::parse(s)).collect())
        .unwrap_or_default();
    let display_name = c
        .name
        .filter(|n| !n.trim().is_empty())
        .or(c.preferred_username.filter(|n| !n.trim().is_empty()))
        .unwrap_or_else(|| c.sub.clone());
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
    fn preferred_username_is_the_name_when_name_is_missing() -> Result<(), AuthError> {
        let t = issue_dev_token(SECRET, "iss", "bob", None, &[Role::Client], 60)?;
        assert_eq!(
            Verifier::hs256(SECRET, None).verify(&t)?.display_name,
            "bob"
        );
        Ok(())
    }
}
