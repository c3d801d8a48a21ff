//! The engine rides out outages of what it stands on: under the steady load of `e2e::load` (the one
//! `crash.rs` kills our own services under), PostgreSQL, the Temporal server and the broker each go
//! down and come back in turn, on a stack of this test's own (`e2e::private_stack`; the shared dev
//! stack serves every other test). Afterwards every accepted message is visible exactly once to the
//! manager of its ticket (or blocked exactly once), no ticket has two managers, no manager is over
//! capacity, and every client and manager stream resumed with no gap and no duplicate. While a
//! dependency is down the edge answers (HTTP 503 with a JSON error body, gRPC `UNAVAILABLE`) instead
//! of hanging, and clients retry with the same idempotency key.
//!
//! How each goes down, and why:
//! - PostgreSQL: `pg_ctl -m immediate`, a crash of every backend with WAL recovery at the restart
//!   (a database is meant to survive exactly that);
//! - Temporal: SIGKILL; the dev server runs on SQLite with WAL, so committed state survives;
//! - the broker: SIGKILL as well; Tansu keeps its log in SQLite, and an acknowledged record lost
//!   to the kill would fail the checks below. (This restart is what showed that Tansu 0.6.0 cannot
//!   serve librdkafka's idempotent producer across a restart: see `platform::kafka::producer_config`.)

use std::time::Duration;

use e2e::load::{Load, LoadConfig};
use e2e::private_stack::{PrivateStack, Stop};
use e2e::{Engine, eventually};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn restarting_postgres_temporal_and_the_broker_under_load_loses_and_duplicates_nothing()
-> anyhow::Result<()> {
    let mut deps = PrivateStack::start().await?;
    let stack = deps.stack().clone();
    // The load runs until every outage is over (at most 20 messages per client); the checkpoints
    // are counts of accepted messages, so each outage begins while the load runs.
    let cfg = LoadConfig {
        rate: 20,
        per_client: 20,
        ..LoadConfig::default()
    };
    let engine = Engine::start_with(&stack, &[cfg.spec_env(deps.dir())?]).await?;
    let step = cfg.clients;
    let mut load = Load::start(&stack, &engine, cfg).await?;

    // PostgreSQL: down until both edges have refused a message as unavailable.
    load.wait_accepted(step).await?;
    let before = load.refusals();
    deps.stop_postgres(Stop::Crash).await?;
    load.wait_refusals("PostgreSQL down: HTTP 503 and gRPC UNAVAILABLE", |r| {
        r.http_unavailable > before.http_unavailable && r.grpc_unavailable > before.grpc_unavailable
    })
    .await?;
    deps.start_postgres().await?;

    // Temporal: down while the edge accepts two rounds of messages (seconds: the worker's polls,
    // signals and completions back off meanwhile); acceptance needs Kafka only.
    load.wait_accepted(load.accepted() + step).await?;
    deps.stop_temporal(Stop::Crash).await?;
    load.wait_accepted(load.accepted() + 2 * step).await?;
    deps.start_temporal().await?;

    // The broker: down until both edges have refused a message as unavailable.
    load.wait_accepted(load.accepted() + step).await?;
    let before = load.refusals();
    deps.stop_kafka(Stop::Crash).await?;
    load.wait_refusals("broker down: HTTP 503 and gRPC UNAVAILABLE", |r| {
        r.http_unavailable > before.http_unavailable && r.grpc_unavailable > before.grpc_unavailable
    })
    .await?;
    deps.start_kafka().await?;

    // Some more load on the recovered engine, then the checks.
    load.wait_accepted(load.accepted() + step).await?;
    load.stop_offering();
    let report = load.finish(&engine).await?;
    // The PostgreSQL restart ended the inbound consumer's partition leases (session locks); it
    // took them again rather than read on without them.
    let db = sqlx::PgPool::connect(&engine.database_url).await?;
    let wanted = i64::from(deps.stack().kafka().partitions);
    eventually(
        Duration::from_secs(30),
        "every partition lease held again after the PostgreSQL restart",
        || async {
            let held: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted
                 AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            )
            .fetch_one(&db)
            .await?;
            Ok((held >= wanted).then_some(()))
        },
    )
    .await?;
    let r = report.refusals;
    assert_eq!(
        (r.http_hung, r.grpc_hung, r.http_other_5xx),
        (0, 0, 0),
        "the edge answered every send, and every refusal was a 503 with a JSON body: {report:?}"
    );
    Ok(())
}
