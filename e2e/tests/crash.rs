//! Nothing is lost when a service dies: under a steady load of client messages (half over web chat
//! HTTP, half over gRPC `ClientService/SendMessage`) across many tickets, `communication`,
//! `workflow` and `gateway` are each killed with SIGKILL and restarted in turn. Afterwards every
//! accepted message is visible exactly once to the manager of its ticket (or blocked exactly once),
//! no ticket has two managers, no manager is over capacity, and every client and manager stream,
//! resumed after each crash from its last cursor, delivered exactly the events of its audience in
//! the store: no gap and no duplicate (the load and its checks: `e2e::load`).
//!
//! Restarts of the broker, Temporal and PostgreSQL are in `stack_faults.rs`, on a stack of its own:
//! this one is shared by every test of `make test`.

use e2e::load::{Load, LoadConfig};
use e2e::{Engine, Stack};
use uuid::Uuid;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killing_each_service_under_load_loses_and_duplicates_nothing() -> anyhow::Result<()> {
    let stack = Stack::from_env().await?;
    let cfg = LoadConfig::default();
    let total = cfg.total();
    let dir = std::env::temp_dir().join(format!("crash-{}", Uuid::new_v4().simple()));
    let mut engine = Engine::start_with(&stack, &[cfg.spec_env(&dir)?]).await?;
    let mut load = Load::start(&stack, &engine, cfg).await?;

    // Each service dies once while the load runs.
    load.wait_accepted(total / 5).await?;
    engine.crash_and_restart_communication().await?;
    load.follow(&engine);
    load.wait_accepted(total * 2 / 5).await?;
    engine.crash_and_restart_workflow().await?;
    load.wait_accepted(total * 3 / 5).await?;
    engine.crash_and_restart_gateway().await?;
    load.follow(&engine);

    let report = load.finish(&engine).await?;
    assert!(
        report.ws_connections_min >= 2 && report.grpc_connections_min >= 2,
        "every stream resumed after its edge crashed: {report:?}"
    );
    Ok(())
}
