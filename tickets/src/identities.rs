//! Web identities: which client a verified token is. A client id is the identity's source and
//! name (see [`crate::domain::CLIENT_ID_PREFIXES`]); this table is what keeps it stable, binds
//! the ids of clients from before the prefixes to their identity provider, and tells two
//! providers' equal subjects apart.

use crate::domain::web_client_id;
use crate::store::{PgStore, Result, StoreError};

/// Identities kept resolved per store, at most this many (the least used go first).
const CACHED_IDENTITIES: u64 = 100_000;

/// (issuer, subject) → client id, bounded (`moka`).
#[derive(Clone)]
pub(crate) struct WebIds(moka::sync::Cache<(String, String), String>);

impl Default for WebIds {
    fn default() -> Self {
        Self(moka::sync::Cache::new(CACHED_IDENTITIES))
    }
}

impl PgStore {
    /// The client id of subject `subject` of issuer `issuer`, recorded on first sight: the one
    /// bound to them; else a client of that subject from before the prefixes, bound now to this
    /// issuer; else a new `web:` id (see [`web_client_id`]). Concurrent first sights agree.
    pub async fn web_client(&self, issuer: &str, subject: &str) -> Result<String> {
        let key = (issuer.to_owned(), subject.to_owned());
        if let Some(id) = self.web_ids.0.get(&key) {
            return Ok(id);
        }
        let id = self.resolve_web_client(issuer, subject).await?;
        self.web_ids.0.insert(key, id.clone());
        Ok(id)
    }

    async fn resolve_web_client(&self, issuer: &str, subject: &str) -> Result<String> {
        let bound = || {
            sqlx::query_scalar::<_, String>(
                "SELECT client_id FROM web_identities WHERE issuer = $1 AND subject = $2",
            )
            .bind(issuer)
            .bind(subject)
            .fetch_optional(self.pool())
        };
        if let Some(id) = bound().await? {
            return Ok(id);
        }
        let claimed: Option<String> = sqlx::query_scalar(
            "UPDATE web_identities SET issuer = $1 WHERE issuer IS NULL AND subject = $2
             RETURNING client_id",
        )
        .bind(issuer)
        .bind(subject)
        .fetch_optional(self.pool())
        .await?;
        if let Some(id) = claimed {
            return Ok(id);
        }
        for taken in [false, true] {
            let candidate = web_client_id(issuer, subject, taken);
            let inserted: Option<String> = sqlx::query_scalar(
                "INSERT INTO web_identities (issuer, subject, client_id) VALUES ($1, $2, $3)
                 ON CONFLICT DO NOTHING RETURNING client_id",
            )
            .bind(issuer)
            .bind(subject)
            .bind(&candidate)
            .fetch_optional(self.pool())
            .await?;
            if let Some(id) = inserted {
                return Ok(id);
            }
            // Another request recorded this identity meanwhile, or the id is another's.
            if let Some(id) = bound().await? {
                return Ok(id);
            }
        }
        Err(StoreError::IdentityTaken(format!(
            "subject {subject:?} of {issuer:?}"
        )))
    }
}
