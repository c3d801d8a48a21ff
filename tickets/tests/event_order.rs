//! The outbox order streams resume from: writers run concurrently (no global lock), and a reader
//! that keeps reading `seq > cursor` while they write sees every event exactly once, in `seq`
//! order. Against a real PostgreSQL (`#[sqlx::test]`: its own migrated database).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use sqlx::PgPool;
use tickets::{NewClientMessage, PgStore};

const WRITERS: usize = 8;
const PER_WRITER: usize = 60;

fn message(client: &str, n: usize) -> NewClientMessage {
    NewClientMessage::from_source(
        "web",
        format!("{client}/{n}"),
        client,
        "",
        &format!("message {n}"),
    )
}

/// Events after `cursor`, as a stream reads them.
async fn after(pool: &PgPool, cursor: i64) -> anyhow::Result<Vec<(i64, String)>> {
    Ok(
        sqlx::query_as("SELECT seq, dedup_key FROM events WHERE seq > $1 ORDER BY seq LIMIT 1000")
            .bind(cursor)
            .fetch_all(pool)
            .await?,
    )
}

#[sqlx::test(migrator = "tickets::store::MIGRATOR")]
async fn a_reader_of_seq_order_misses_nothing_while_writers_commit_concurrently(
    pool: PgPool,
) -> anyhow::Result<()> {
    let store = PgStore::from_pool(pool.clone());
    let done = Arc::new(AtomicBool::new(false));
    let reader = {
        let pool = pool.clone();
        let done = done.clone();
        tokio::spawn(async move {
            let mut cursor = 0;
            let mut seen: Vec<String> = Vec::new();
            loop {
                // Read to the end after the last writer finished: then nothing is in flight.
                let last_round = done.load(Ordering::SeqCst);
                loop {
                    let rows = after(&pool, cursor).await?;
                    let Some((last, _)) = rows.last() else { break };
                    cursor = *last;
                    seen.extend(rows.into_iter().map(|(_, k)| k));
                }
                if last_round {
                    return anyhow::Ok(seen);
                }
                tokio::task::yield_now().await;
            }
        })
    };
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                for n in 0..PER_WRITER {
                    // Transactions of different lengths, so commits overtake each other.
                    let batch: Vec<NewClientMessage> = (0..=(n % 3))
                        .map(|i| message(&format!("client-{w}"), n * 3 + i))
                        .collect();
                    store.record_inbound_batch(&batch).await?;
                }
                anyhow::Ok(())
            })
        })
        .collect();
    for w in writers {
        w.await??;
    }
    done.store(true, Ordering::SeqCst);
    let seen = reader.await??;

    let all: Vec<String> = sqlx::query_scalar("SELECT dedup_key FROM events ORDER BY seq")
        .fetch_all(&pool)
        .await?;
    let expected: usize = WRITERS * (0..PER_WRITER).map(|n| n % 3 + 1).sum::<usize>();
    assert_eq!(all.len(), expected, "every event was written");
    let unnumbered: i64 = sqlx::query_scalar("SELECT count(*) FROM events WHERE seq IS NULL")
        .fetch_one(&pool)
        .await?;
    assert_eq!(
        unnumbered, 0,
        "every writer numbered its events after its commit"
    );
    assert_eq!(
        seen.iter().collect::<BTreeSet<_>>().len(),
        seen.len(),
        "no event was read twice"
    );
    assert_eq!(seen, all, "the reader saw every event, in seq order");
    Ok(())
}

#[sqlx::test(migrator = "tickets::store::MIGRATOR")]
async fn events_a_writer_left_unnumbered_are_numbered_by_the_sweep_after_the_others(
    pool: PgPool,
) -> anyhow::Result<()> {
    let store = PgStore::from_pool(pool.clone());
    store.record_inbound(&message("ana", 1)).await?;
    // A writer that died between its commit and the numbering.
    sqlx::query(
        "INSERT INTO events (dedup_key, kind, client_id, client_visible, payload)
         VALUES ('orphan', 'ticket_closed', 'ana', true, '{}')",
    )
    .execute(&pool)
    .await?;
    assert!(
        after(&pool, 0).await?.iter().all(|(_, k)| k != "orphan"),
        "not visible unnumbered"
    );
    assert_eq!(store.sequence_events().await?, 1);
    assert_eq!(store.sequence_events().await?, 0, "numbered once");
    let order: Vec<String> = after(&pool, 0).await?.into_iter().map(|(_, k)| k).collect();
    assert_eq!(order.len(), 2);
    assert_eq!(
        order[1], "orphan",
        "numbered after what was numbered before"
    );
    Ok(())
}

#[sqlx::test(migrator = "tickets::store::MIGRATOR")]
async fn the_outbox_tail_hands_on_each_event_numbered_after_its_start_once_in_order(
    pool: PgPool,
) -> anyhow::Result<()> {
    let store = PgStore::from_pool(pool.clone());
    store.record_inbound(&message("before", 1)).await?;
    let start: i64 = sqlx::query_scalar("SELECT max(seq) FROM events")
        .fetch_one(&pool)
        .await?;
    let mut tail = tickets::outbox::OutboxTail::after(store.clone(), start);
    // Nothing after the start: the tail waits for a numbering.
    let first = tokio::spawn(async move {
        let batch = tail.next().await?;
        anyhow::Ok((tail, batch))
    });
    store
        .record_inbound_batch(&[message("ana", 1), message("bo", 1)])
        .await?;
    let (mut tail, batch) = first.await??;
    let mut seen: Vec<(String, bool)> = batch
        .iter()
        .map(|e| (e.client_id.clone(), e.client_visible))
        .collect();
    while seen.len() < 2 {
        seen.extend(
            tail.next()
                .await?
                .into_iter()
                .map(|e| (e.client_id, e.client_visible)),
        );
    }
    assert_eq!(
        seen,
        vec![("ana".to_owned(), true), ("bo".to_owned(), true)],
        "the events numbered after the tail's start, in seq order, without the earlier one"
    );
    store.record_inbound(&message("cy", 1)).await?;
    let next = tail.next().await?;
    assert_eq!(next.len(), 1, "each event once: {next:?}");
    assert_eq!(next[0].client_id, "cy");
    Ok(())
}
