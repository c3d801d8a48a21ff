//! What the client-facing services (`communication`'s HTTP and WebSocket edge, the `gateway`'s
//! gRPC) share about their callers: a bearer token verified (dev HS256, or the identity
//! provider's JWKS) and turned into the domain's [`tickets::Caller`], with the role an operation
//! needs. The `inbox-token` binary prints dev tokens.

pub mod auth;
