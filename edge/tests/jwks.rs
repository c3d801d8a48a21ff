//! Production auth: RS256/ES256 tokens verified against a JWKS served by a local HTTP server.
//! The keys under `tests/keys/` are throwaway test keys.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use edge::auth::{AuthError, JwksSettings, Verifier};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use tickets::Role;

const RSA_PEM: &[u8] = include_bytes!("keys/rsa.pem");
const EC_PEM: &[u8] = include_bytes!("keys/ec.pem");
const RSA_JWK: &str = include_str!("keys/rsa.jwk.json");
const EC_JWK: &str = include_str!("keys/ec.jwk.json");
const ISSUER: &str = "https://idp.example/realms/bank";
const AUDIENCE: &str = "inbox-gateway";

/// Serves `keys` as a JWKS; returns its URL. The set can be changed while it runs.
async fn jwks_server(keys: Arc<RwLock<Vec<Value>>>) -> anyhow::Result<String> {
    let app = axum::Router::new().route(
        "/certs",
        axum::routing::get(move || {
            let keys = keys.clone();
            async move {
                let keys = keys.read().map(|k| k.clone()).unwrap_or_default();
                axum::Json(json!({ "keys": keys }))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(format!("http://{addr}/certs"))
}

fn claims(overrides: Value) -> Value {
    let now = chrono::Utc::now().timestamp();
    let mut c = json!({
        "sub": "alice",
        "iss": ISSUER,
        "aud": AUDIENCE,
        "exp": now + 300,
        "iat": now,
        "preferred_username": "alice",
        "realm_access": { "roles": ["manager"] },
    });
    if let (Some(c), Value::Object(o)) = (c.as_object_mut(), overrides) {
        c.extend(o);
    }
    c
}

fn sign(alg: Algorithm, kid: &str, claims: &Value) -> anyhow::Result<String> {
    let key = match alg {
        Algorithm::ES256 => EncodingKey::from_ec_pem(EC_PEM)?,
        _ => EncodingKey::from_rsa_pem(RSA_PEM)?,
    };
    let mut header = Header::new(alg);
    header.kid = Some(kid.to_owned());
    Ok(jsonwebtoken::encode(&header, claims, &key)?)
}

async fn verifier_with(keys: Vec<Value>) -> anyhow::Result<(Verifier, Arc<RwLock<Vec<Value>>>)> {
    let keys = Arc::new(RwLock::new(keys));
    let url = jwks_server(keys.clone()).await?;
    Ok((
        Verifier::jwks(&JwksSettings {
            url: url.parse()?,
            issuer: ISSUER.into(),
            audience: Some(AUDIENCE.into()),
            ca_file: None,
            refresh: Duration::from_secs(300),
            min_refresh: Duration::ZERO,
        })?,
        keys,
    ))
}

#[tokio::test]
async fn rs256_and_es256_tokens_of_the_jwks_verify_into_a_caller_with_realm_roles()
-> anyhow::Result<()> {
    let (v, _) = verifier_with(vec![
        serde_json::from_str(RSA_JWK)?,
        serde_json::from_str(EC_JWK)?,
    ])
    .await?;
    let rs = v
        .verify_async(&sign(Algorithm::RS256, "rsa-1", &claims(json!({})))?)
        .await?;
    assert_eq!(rs.user_id, "alice");
    assert!(rs.has_role(Role::Manager));
    let es = v
        .verify_header_async(Some(&format!(
            "Bearer {}",
            sign(Algorithm::ES256, "ec-1", &claims(json!({"sub": "bob"})))?
        )))
        .await?;
    assert_eq!(es.user_id, "bob");
    Ok(())
}

#[tokio::test]
async fn alg_none_expired_not_yet_valid_wrong_issuer_and_wrong_audience_are_rejected()
-> anyhow::Result<()> {
    let (v, _) = verifier_with(vec![serde_json::from_str(RSA_JWK)?]).await?;
    let now = chrono::Utc::now().timestamp();
    let cases = [
        ("expired", json!({"exp": now - 600})),
        ("not yet valid", json!({"nbf": now + 600})),
        ("wrong issuer", json!({"iss": "https://evil.example"})),
        ("wrong audience", json!({"aud": "someone-else"})),
    ];
    for (name, overrides) in cases {
        let token = sign(Algorithm::RS256, "rsa-1", &claims(overrides))?;
        assert!(
            matches!(v.verify_async(&token).await, Err(AuthError::Invalid(_))),
            "{name} must be rejected"
        );
    }
    // {"alg":"none","kid":"rsa-1"} with valid claims and no signature.
    let none = format!(
        "{}.{}.",
        base64url(br#"{"alg":"none","kid":"rsa-1","typ":"JWT"}"#),
        base64url(claims(json!({})).to_string().as_bytes())
    );
    assert!(matches!(
        v.verify_async(&none).await,
        Err(AuthError::Invalid(_))
    ));
    // A shared-secret token with the key's kid (algorithm confusion) is refused too.
    let mut hs = Header::new(Algorithm::HS256);
    hs.kid = Some("rsa-1".into());
    let confused = jsonwebtoken::encode(
        &hs,
        &claims(json!({})),
        &EncodingKey::from_secret(RSA_JWK.as_bytes()),
    )?;
    assert!(matches!(
        v.verify_async(&confused).await,
        Err(AuthError::Invalid(_))
    ));
    Ok(())
}

#[tokio::test]
async fn a_token_of_a_rotated_in_key_verifies_after_the_keys_are_fetched_again()
-> anyhow::Result<()> {
    let (v, keys) = verifier_with(vec![serde_json::from_str(RSA_JWK)?]).await?;
    v.verify_async(&sign(Algorithm::RS256, "rsa-1", &claims(json!({})))?)
        .await?;
    let ec_token = sign(Algorithm::ES256, "ec-1", &claims(json!({})))?;
    assert!(
        v.verify(&ec_token).is_err(),
        "an unknown kid fails without a fetch"
    );
    keys.write()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .push(serde_json::from_str(EC_JWK)?);
    assert_eq!(v.verify_async(&ec_token).await?.user_id, "alice");
    Ok(())
}

fn base64url(bytes: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(char::from(T[((n >> (18 - 6 * i)) & 63) as usize]));
        }
    }
    out
}
