//! Plumbing the three services share so it is written once: tracing set-up, Kafka client configuration and topic creation, environment settings and the production
//! profile, sealing with a key from the environment, the ops listener (health, readiness, metrics) and loop supervision, shutdown and YAML
//! error positions.
//! No domain logic lives here, and it depends on no crate of the engine (token verification,
//! which yields the domain's callers, is the `edge` crate's).

pub mod kafka;
pub mod ops;
pub mod seal;
pub mod settings;
pub mod shutdown;
pub mod telemetry;
pub mod yaml;

/// The root of the checkout whose tests or tools are running, for files they read from the tree
/// (`workflows.yaml`, `scripts/`). Cargo sets `CARGO_MANIFEST_DIR` at run time for `cargo test`,
/// `cargo run` and nextest (every workspace crate sits one level below the root); the value baked
/// in at compile time is only the fallback, because a target dir shared between clones at
/// different paths keeps the binaries built from the other clone: cargo does not rebuild a
/// package whose sources merely moved.
pub fn workspace_root() -> std::path::PathBuf {
    let crate_dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    crate_dir
        .parent()
        .map(|p| p.to_path_buf())
        .unwrap_or(crate_dir)
}
