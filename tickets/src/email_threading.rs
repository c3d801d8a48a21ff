//! Store support for threading mail by a subject ticket reference: the candidates a short ticket
//! prefix names, so the email channel can check the reference's tag against each full ticket id.

use crate::store::{PgStore, Result};

impl PgStore {
    /// Tickets whose id starts with `prefix` (hex, as in a subject reference) and whose client
    /// id starts with `client_prefix`, newest first, as (ticket id, client id). At most `limit`:
    /// 8 hex digits almost never collide, and a longer list only costs tag checks.
    pub async fn tickets_with_prefix(
        &self,
        prefix: &str,
        client_prefix: &str,
        limit: i64,
    ) -> Result<Vec<(uuid::Uuid, String)>> {
        if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(Vec::new());
        }
        Ok(sqlx::query_as(
            "SELECT id, client_id FROM tickets
             WHERE id::text LIKE $1 AND starts_with(client_id, $2)
             ORDER BY created_at DESC LIMIT $3",
        )
        .bind(format!("{}%", prefix.to_ascii_lowercase()))
        .bind(client_prefix)
        .bind(limit)
        .fetch_all(self.pool())
        .await?)
    }
}
