//! Typing indicators: "the other side is writing" between a client and the manager of their
//! assigned ticket. They are not events of the ticket (nothing is kept, nothing is resumed): a
//! signal goes out through PostgreSQL `NOTIFY` on [`TYPING_CHANNEL`] to every edge process,
//! which hands it to the recipient's open streams; one missed is simply not shown. Who may
//! signal whom is rule 2 as for messages: only across an assigned ticket, only its two sides.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::store::{PgStore, Result, StoreError};

/// The `LISTEN`/`NOTIFY` channel of typing signals.
pub const TYPING_CHANNEL: &str = "inbox_typing";

/// One "is typing" signal, as it crosses the channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Typing {
    pub ticket_id: Uuid,
    pub client_id: String,
    pub manager_id: String,
    /// Who types: the client (the manager is told) or the manager (the client is told).
    pub by_client: bool,
    /// The manager's name, shown to the client ("Alice is typing…"); empty when the client types.
    #[serde(default)]
    pub manager_name: String,
}

impl PgStore {
    /// The client is typing: their assigned ticket's manager is told. None when no manager holds
    /// a ticket of theirs (nobody to tell).
    pub async fn client_typing(&self, client_id: &str) -> Result<Option<Typing>> {
        let row: Option<(Uuid, String)> = sqlx::query_as(
            "SELECT id, manager_id FROM tickets
             WHERE client_id = $1 AND status = 'assigned' AND manager_id IS NOT NULL",
        )
        .bind(client_id)
        .fetch_optional(self.pool())
        .await?;
        let Some((ticket_id, manager_id)) = row else {
            return Ok(None);
        };
        let t = Typing {
            ticket_id,
            client_id: client_id.to_owned(),
            manager_id,
            by_client: true,
            manager_name: String::new(),
        };
        self.notify_typing(&t).await?;
        Ok(Some(t))
    }

    /// The manager (`manager_name` as the client sees them) is typing in `ticket_id`: its client
    /// is told. `TicketNotFound` unless the ticket is assigned to them.
    pub async fn manager_typing(
        &self,
        manager_id: &str,
        manager_name: &str,
        ticket_id: Uuid,
    ) -> Result<Typing> {
        let client_id: String = sqlx::query_scalar(
            "SELECT client_id FROM tickets WHERE id = $1 AND manager_id = $2 AND status = 'assigned'",
        )
        .bind(ticket_id)
        .bind(manager_id)
        .fetch_optional(self.pool())
        .await?
        .ok_or(StoreError::TicketNotFound)?;
        let t = Typing {
            ticket_id,
            client_id,
            manager_id: manager_id.to_owned(),
            by_client: false,
            manager_name: manager_name.to_owned(),
        };
        self.notify_typing(&t).await?;
        Ok(t)
    }

    async fn notify_typing(&self, t: &Typing) -> Result<()> {
        let payload = serde_json::to_string(t).unwrap_or_default();
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(TYPING_CHANNEL)
            .bind(payload)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// A listener of typing signals on this store's database.
    pub async fn typing_listener(&self) -> Result<sqlx::postgres::PgListener> {
        let mut l = sqlx::postgres::PgListener::connect_with(self.pool()).await?;
        l.listen(TYPING_CHANNEL).await?;
        Ok(l)
    }
}
