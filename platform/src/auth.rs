//! Bearer JWTs in the Keycloak layout: the user id is `sub`, roles are `realm_access.roles`, the
//! display name is `name` or else `preferred_username`. Dev mode verifies HS256 with a shared secret.

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
        }
    }

    pub fn verify(&self, token: &str) -> Result<Caller, AuthError> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation)
            .map_err(|e| AuthError::Invalid(e.to_string()))?;
        caller_of(data.claims)
    }

    /// Verifies the value of an `Authorization` header (`Bearer <token>`).
    pub fn verify_header(&self, header: Option<&str>) -> Result<Caller, AuthError> {
        let value = header.ok_or(AuthError::Missing)?;
        let token = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .ok_or_else(|| AuthError::Invalid("expected `Bearer <token>`".into()))?;
        self.verify(token.trim())
    }
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
