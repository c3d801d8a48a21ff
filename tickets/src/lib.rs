//! The ticket domain (tickets, messages, managers, AFC verdicts) and its PostgreSQL store.
//!
//! The rules know nothing of SQL, Kafka, gRPC or Temporal and are tested without a database:
//! `domain` (the types), `screening` (rule 1: what an AFC verdict does), `matching` (rules 3 and
//! 4: which waiting ticket goes to which ready manager), `visibility` (rule 2: who may see what,
//! the one filter every read of the store uses), `ticket_event` (every event: kind, dedup key,
//! audience, payload). Where a rule drives writes, it does so through a port the store
//! implements (`screening::ScreeningPort`, `matching::MatchingPort`), so the rule's whole step
//! is tested over vectors. `store` is the PostgreSQL adapter (sqlx, embedded migrations, the
//! writing transactions); the other modules are its reads and writes by aggregate:
//! `inbound` (the inbound consumer's transaction), `messages`, `attachments` (files messages
//! carry: references, uploaders, who may fetch), `managers`, `desk` (the manager's
//! pages and actions), `lifecycle`, `chat` (the client's), `outbox`, `external_afc` (the bank's
//! own AFC system's queue and verdicts), `channels` and `email` (delivery ledgers and mail
//! threading), `offsets`, `admin`, `reports` (supervisors' figures of a period), `simulation` (the recorded facts a dry
//! run of a changed spec replays), `search`,
//! `gauges` and `meters`.

pub mod admin;
pub mod attachments;
pub mod bots;
pub mod channels;
pub mod chat;
pub mod desk;
pub mod domain;
pub mod email;
pub mod external_afc;
pub mod gauges;
pub mod identities;
pub mod inbound;
pub mod lifecycle;
pub mod managers;
pub mod matching;
pub mod messages;
pub mod meters;
pub mod offsets;
pub mod outbox;
pub mod reports;
pub mod screening;
pub mod search;
pub mod simulation;
pub mod store;
pub mod ticket_event;
pub mod trace_context;
pub mod typing;
mod visibility;

pub use channels::{Claim, Delivery, DeliveryStatus};
pub use chat::{ChatCursor, ChatMessage, ChatPage, ReadState};
pub use domain::*;
pub use email::{LastInbound, MailDirection, MailRecord, MailboxPosition};
pub use lifecycle::ReplySilence;
pub use store::{PgStore, StoreError};
pub use ticket_event::TicketEvent;
