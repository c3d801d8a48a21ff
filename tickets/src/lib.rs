//! The ticket domain (tickets, messages, managers, AFC verdicts) and its PostgreSQL store.
//!
//! `domain` holds the types and rules and knows nothing of SQL, Kafka, gRPC or Temporal; `store` is
//! the PostgreSQL adapter (sqlx, embedded migrations, the outbox); `visibility` is the one place
//! that says who may see what (banking rules 1 and 2), used by every read of the store.

pub mod admin;
pub mod admin_filter;
pub mod afc_provider;
pub mod channels;
pub mod chat;
pub mod delivery_failure;
pub mod desk;
pub mod domain;
pub mod email;
pub mod email_threading;
pub mod gauges;
pub mod inbound_batch;
pub mod lifecycle;
pub mod managers;
pub mod messages;
pub mod meters;
pub mod offsets;
pub mod outbox;
pub mod store;
pub mod ticket_event;
pub mod trace_context;
mod visibility;

pub use channels::{Delivery, DeliveryStatus};
pub use chat::{ChatCursor, ChatMessage, ChatPage, ReadState};
pub use domain::*;
pub use email::{LastInbound, MailDirection, MailRecord, MailboxPosition};
pub use lifecycle::ReplySilence;
pub use store::{PgStore, StoreError};
pub use ticket_event::TicketEvent;
