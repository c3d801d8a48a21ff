//! Scale-out on one machine: two instances of each of `communication`, `gateway` and `workflow`
//! on one database, topics and task queue. The inbound partitions are shared between the two
//! workflow instances (each holds its fair share, none idles while the other holds all); when one
//! instance of every service is SIGKILLed under load, the survivor takes its partitions within
//! seconds, client WebSockets and manager streams reconnect to the other replicas and resume from
//! their cursors, and nothing is lost or doubled and no ticket gets two managers (`e2e::load`).

use std::collections::BTreeMap;
use std::time::Duration;

use e2e::load::{Load, LoadConfig};
use e2e::{Engine, Stack, eventually};
use uuid::Uuid;

/// Partition leases held per workflow process (by its `application_name`, which carries its pid).
async fn partitions_by_process(db: &sqlx::PgPool) -> anyhow::Result<BTreeMap<String, i64>> {
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT a.application_name, count(*)
         FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
         WHERE l.locktype = 'advisory' AND l.objsubid = 1 AND l.granted
           AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
           AND a.application_name LIKE 'inbox-workflow %'
         GROUP BY a.application_name",
    )
    .fetch_all(db)
    .await?;
    Ok(rows.into_iter().collect())
}

fn name_of(pid: Option<u32>) -> String {
    format!("inbox-workflow {}", pid.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_share_the_partitions_and_losing_one_of_each_under_load_loses_nothing()
-> anyhow::Result<()> {
    let stack = Stack::from_env().await?;
    let cfg = LoadConfig::default();
    let total = cfg.total();
    let dir = std::env::temp_dir().join(format!("scale-out-{}", Uuid::new_v4().simple()));
    // The local stack runs one partition per topic (the broker polls each one); sharing needs
    // several, as production has.
    let partitions = 4;
    let mut engine = Engine::start_with(
        &stack,
        &[
            cfg.spec_env(&dir)?,
            ("INBOX_KAFKA_PARTITIONS", partitions.to_string()),
        ],
    )
    .await?;
    let db = sqlx::PgPool::connect(&engine.database_url).await?;
    // The workflow service leases the partitions of two topics: `inbound.messages` and the bot's
    // answers (`bot.replies`); each is shared on its own.
    let sources = 2;
    let leased = partitions * sources;
    let first = name_of(engine.pids()[0].1);
    eventually(
        Duration::from_secs(30),
        "one instance holds every partition",
        || async {
            let held = partitions_by_process(&db).await?;
            Ok((held.get(&first) == Some(&leased)).then_some(()))
        },
    )
    .await?;

    // A second instance of each service joins: the partitions are shared half and half.
    let replicas = engine.start_replicas().await?;
    let second = name_of(replicas.pids()[0]);
    let half = leased / 2;
    eventually(
        Duration::from_secs(30),
        "the partitions shared between the two",
        || async {
            let held = partitions_by_process(&db).await?;
            Ok(
                (held.get(&first) == Some(&half) && held.get(&second) == Some(&(leased - half)))
                    .then_some(()),
            )
        },
    )
    .await?;

    // Under load, the first instance of every service dies; clients and managers move to the
    // replicas, and the surviving workflow instance takes every partition.
    let mut load = Load::start(&stack, &engine, cfg).await?;
    load.wait_accepted(total / 3).await?;
    engine.kill_first_instances(replicas).await?;
    load.follow(&engine);
    eventually(
        Duration::from_secs(30),
        "the survivor holds every partition",
        || async {
            let held = partitions_by_process(&db).await?;
            Ok((held.get(&second) == Some(&leased) && held.len() == 1).then_some(()))
        },
    )
    .await?;

    let report = load.finish(&engine).await?;
    assert!(
        report.ws_connections_min >= 2 && report.grpc_connections_min >= 2,
        "every stream resumed on the other replica: {report:?}"
    );
    Ok(())
}
