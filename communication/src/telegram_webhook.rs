//! Telegram webhook mode: Telegram POSTs each `Update` to a route of `communication`'s HTTP
//! listener, with our secret in `X-Telegram-Bot-Api-Secret-Token`.
//!
//! The answer is 200 only after Kafka acknowledged the message: any other answer (or a dropped
//! connection, e.g. a crash) makes Telegram deliver the update again, and a repeated update maps
//! onto the same message id (it derives from chat id and message id), which the inbound consumer
//! stores once. No offset is kept in this mode: Telegram keeps the update until it got a 200.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::json;
use teloxide::payloads::SetWebhookSetters;
use teloxide::prelude::Requester;
use teloxide::types::{AllowedUpdate, Update, UpdateKind};

use crate::error::ApiError;
use crate::telegram::{CHANNEL, Intake, TelegramSettings, Took, WebhookSettings};

pub const SECRET_HEADER: &str = "x-telegram-bot-api-secret-token";
/// The crash knob's name for this inbound path.
pub const CRASH_CHANNEL: &str = "telegram-webhook";
/// Telegram's updates are small; anything near this is not one.
const MAX_UPDATE_BYTES: usize = 1024 * 1024;

struct Hook {
    secret: String,
    intake: Intake,
}

/// The webhook route alone, to merge into the service's router.
pub fn router(settings: &WebhookSettings, intake: Intake) -> Router {
    Router::new()
        .route(&settings.path, post(receive))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_UPDATE_BYTES))
        .with_state(Arc::new(Hook {
            secret: settings.secret.clone(),
            intake,
        }))
}

/// Tells Telegram where to POST (when `public_url` is configured), with the secret and only the
/// update kinds we read.
pub async fn register(settings: &TelegramSettings, hook: &WebhookSettings) -> anyhow::Result<()> {
    let Some(url) = &hook.public_url else {
        tracing::info!(path = %hook.path, "telegram webhook: no public_url; assuming it is registered");
        return Ok(());
    };
    settings
        .bot()?
        .set_webhook(url.clone())
        .secret_token(hook.secret.clone())
        .allowed_updates(vec![AllowedUpdate::Message])
        .await
        .map_err(|e| anyhow::anyhow!("telegram setWebhook {url}: {e}"))?;
    tracing::info!(%url, path = %hook.path, "telegram webhook registered");
    Ok(())
}

/// Constant-time comparison: the secret must not leak through timing.
fn same_secret(given: &[u8], expected: &[u8]) -> bool {
    given.len() == expected.len()
        && given
            .iter()
            .zip(expected)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

async fn receive(
    State(hook): State<Arc<Hook>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let given = headers
        .get(SECRET_HEADER)
        .map(|v| v.as_bytes())
        .unwrap_or_default();
    if !same_secret(given, hook.secret.as_bytes()) {
        return Err(ApiError::Unauthenticated(
            "missing or wrong X-Telegram-Bot-Api-Secret-Token".into(),
        ));
    }
    let update: Update = serde_json::from_slice(&body).map_err(|e| ApiError::BadRequest {
        status: StatusCode::BAD_REQUEST,
        message: format!("not a Telegram update: {e}"),
    })?;
    let update_id = update.id.0;
    if let UpdateKind::Message(msg) = &update.kind {
        match hook.intake.take_message(msg).await {
            // Not taken: Telegram delivers it again after a 503.
            Err(e) => return Err(ApiError::Unavailable(e)),
            Ok(Took::Published(m)) => {
                tracing::info!(message_id = %m.message_id, client_id = %m.client_id,
                    update_id, channel = CHANNEL, files = m.attachments.len(),
                    "telegram message accepted (webhook)");
                crate::crash::after_publish(CRASH_CHANNEL);
            }
            // Refused and told; a 200 all the same, or Telegram would deliver it again.
            Ok(Took::Refused) => {}
            Ok(Took::Empty) => {
                tracing::debug!(update_id, "telegram webhook: update without content")
            }
        }
    } else {
        // Kinds we did not ask for (allowed_updates) still get a 200, or Telegram retries them.
        tracing::debug!(update_id, "telegram webhook: update kind ignored");
    }
    Ok((StatusCode::OK, Json(json!({ "ok": true }))).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_secret_must_match_exactly() {
        assert!(same_secret(b"abc", b"abc"));
        assert!(!same_secret(b"abd", b"abc"));
        assert!(!same_secret(b"ab", b"abc"));
        assert!(!same_secret(b"", b"abc"));
    }
}
