//! Plumbing the three services share so it is written once: bearer-token verification, tracing
//! set-up, Kafka client configuration and topic creation, environment settings, shutdown and YAML error positions.
//! No domain logic lives here.

pub mod auth;
pub mod kafka;
pub mod settings;
pub mod shutdown;
pub mod telemetry;
pub mod yaml;
