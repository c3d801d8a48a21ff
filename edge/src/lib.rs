//! The client-facing services' shared core (`communication`'s HTTP and WebSocket edge, the
//! `gateway`'s gRPC), so a rule is written once for every edge:
//! - [`auth`]: a bearer token verified (dev HS256, or the identity provider's JWKS) and turned into
//!   the domain's [`tickets::Caller`], with the role an operation needs; the `inbox-token` binary
//!   prints dev tokens.
//! - [`client`]: what a client may do (send, history, read cursor, event stream), with its
//!   admission, limits and validation.
//! - [`stream`]: live event streams of clients and managers (resume by cursor, slow-reader cut-off)
//!   fed by one outbox tail per process.
//! - [`files`]: attachments: their limits and the object store that holds them.
//! - [`publish`]: the inbound topic every channel's message goes to.
//! - [`ratelimit`]: the per-client request budget.
//! - [`web`]: what the edges serve to browsers (the built web apps, CORS) and the HTTP
//!   connection loop with read timeouts.

pub mod auth;
pub mod client;
pub mod files;
pub mod publish;
pub mod ratelimit;
pub mod stream;
pub mod web;

/// The settings of the limits every edge applies (request rates, open streams), declared by each
/// service with a client or manager API.
pub static SETTINGS: &[&platform::settings::Setting] = &[
    &ratelimit::RATE_LIMIT_BURST,
    &ratelimit::RATE_LIMIT_PER_SECOND,
    &stream::MAX_STREAMS_PER_CALLER,
    &web::WEB_ROOT,
    &web::CORS_ORIGINS,
    &web::HTTP_HEADER_TIMEOUT_SECS,
    &files::ATTACHMENT_STORE,
    &files::ATTACHMENT_MAX_BYTES,
    &files::ATTACHMENT_TYPES,
    &files::ATTACHMENT_MAX_PER_MESSAGE,
    &files::AWS_ACCESS_KEY_ID,
    &files::AWS_SECRET_ACCESS_KEY,
    &files::AWS_ENDPOINT,
    &files::AWS_REGION,
    &files::AWS_ALLOW_HTTP,
];
