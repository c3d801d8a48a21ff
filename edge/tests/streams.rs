//! The event streams every edge serves (`edge::stream`) against a real PostgreSQL (`#[sqlx::test]`:
//! its own migrated database) and the real outbox tail: resume after a cursor with no gap and no
//! duplicate, live events, the end when the token expires, and the cut-off of a reader that does
//! not read.

use std::sync::Arc;
use std::time::Duration;

use edge::stream::{Audience, EndReason, Events, Hub, StreamConfig, Streams};
use sqlx::PgPool;
use tickets::{NewClientMessage, PgStore};
use tokio_util::sync::CancellationToken;

const WITHIN: Duration = Duration::from_secs(15);

async fn say(store: &PgStore, client: &str, n: usize) -> anyhow::Result<()> {
    let m = NewClientMessage::from_source(
        "web",
        format!("{client}/{n}"),
        client,
        "",
        &format!("message {n}"),
    );
    store.record_inbound(&m).await?;
    Ok(())
}

/// The client's events after `after`, as the store has them.
async fn stored(store: &PgStore, client: &str, after: i64) -> anyhow::Result<Vec<i64>> {
    Ok(store
        .client_events_after(client, after, 1000)
        .await?
        .iter()
        .map(|e| e.seq)
        .collect())
}

/// Streams over `store` with a tail feeding their hub until the returned token is cancelled.
fn streams(store: &PgStore, config: StreamConfig) -> (Streams, CancellationToken) {
    let stop = CancellationToken::new();
    let streams = Streams {
        store: store.clone(),
        hub: Arc::new(Hub::default()),
        config,
        shutdown: CancellationToken::new(),
    };
    tokio::spawn(edge::stream::listen(
        store.clone(),
        streams.hub.clone(),
        stop.clone(),
        |_| async {},
    ));
    (streams, stop)
}

async fn next_event(events: &mut Events) -> anyhow::Result<tickets::Event> {
    match tokio::time::timeout(WITHIN, events.recv()).await? {
        Some(Ok(e)) => Ok(e),
        Some(Err(end)) => anyhow::bail!("stream ended early: {end:?}"),
        None => anyhow::bail!("stream closed"),
    }
}

#[sqlx::test(migrator = "tickets::store::MIGRATOR")]
async fn a_stream_resumes_after_its_cursor_goes_on_live_and_ends_with_the_cursor_when_the_token_expires(
    pool: PgPool,
) -> anyhow::Result<()> {
    let store = PgStore::from_pool(pool);
    for n in 0..4 {
        say(&store, "ana", n).await?;
        say(&store, "bob", n).await?;
    }
    let all = stored(&store, "ana", 0).await?;
    anyhow::ensure!(all.len() >= 4, "ana's events: {all:?}");
    let (streams, stop) = streams(
        &store,
        StreamConfig {
            page: 2, // several pages from the store before the live events
            ..StreamConfig::default()
        },
    );
    let cursor = all[1];
    let mut events = streams.open(
        Audience::Client("ana".into()),
        cursor,
        Duration::from_secs(6),
    )?;
    let mut seen = Vec::new();
    for _ in &all[2..] {
        seen.push(next_event(&mut events).await?.seq);
    }
    assert_eq!(
        seen,
        all[2..],
        "exactly the events after the cursor, in order"
    );

    let last = *seen.last().unwrap_or(&cursor);
    say(&store, "bob", 10).await?;
    say(&store, "ana", 10).await?;
    let live = stored(&store, "ana", last).await?;
    anyhow::ensure!(!live.is_empty(), "ana's new message made no event");
    let mut got = Vec::new();
    for _ in &live {
        let e = next_event(&mut events).await?;
        assert_eq!(e.client_id, "ana", "never another client's event");
        got.push(e.seq);
    }
    assert_eq!(got, live, "the live events, once each, in order");

    let end = match tokio::time::timeout(WITHIN, events.recv()).await? {
        Some(Err(end)) => end,
        other => anyhow::bail!("expected the token's end, got {other:?}"),
    };
    assert!(matches!(end.reason, EndReason::TokenExpired), "{end:?}");
    assert_eq!(
        end.cursor,
        *got.last().unwrap_or(&last),
        "resume after the last event handed out"
    );
    stop.cancel();
    Ok(())
}

#[sqlx::test(migrator = "tickets::store::MIGRATOR")]
async fn a_reader_that_stops_reading_is_cut_off_after_the_events_its_buffer_holds(
    pool: PgPool,
) -> anyhow::Result<()> {
    let store = PgStore::from_pool(pool);
    for n in 0..6 {
        say(&store, "ana", n).await?;
    }
    let all = stored(&store, "ana", 0).await?;
    anyhow::ensure!(all.len() > 2, "ana's events: {all:?}");
    let (streams, stop) = streams(
        &store,
        StreamConfig {
            buffer: 2,
            max_stall: Duration::from_millis(100),
            ..StreamConfig::default()
        },
    );
    let mut events = streams.open(Audience::Client("ana".into()), 0, Duration::from_secs(600))?;
    // The reader reads nothing: the stream gives up on it and lets go of the connection.
    testkit::eventually(WITHIN, "the stream cut the reader off", || {
        let closed = events.is_closed();
        async move { Ok(closed.then_some(())) }
    })
    .await?;
    let mut held = Vec::new();
    while let Some(item) = events.recv().await {
        match item {
            Ok(e) => held.push(e.seq),
            Err(end) => assert!(matches!(end.reason, EndReason::TooSlow), "{end:?}"),
        }
    }
    assert_eq!(
        held,
        all[..2],
        "what the buffer held, in order, and nothing after the cut"
    );
    stop.cancel();
    Ok(())
}

#[sqlx::test(migrator = "tickets::store::MIGRATOR")]
async fn a_caller_holds_at_most_its_share_of_streams_and_a_closed_one_frees_its_place(
    pool: PgPool,
) -> anyhow::Result<()> {
    let store = PgStore::from_pool(pool);
    let (streams, stop) = streams(
        &store,
        StreamConfig {
            max_per_caller: 2,
            ..StreamConfig::default()
        },
    );
    let ana = || Audience::Client("ana".into());
    let long = Duration::from_secs(600);
    let first = streams.open(ana(), 0, long)?;
    let _second = streams.open(ana(), 0, long)?;
    let refused = streams.open(ana(), 0, long).err();
    assert_eq!(refused.map(|e| e.open), Some(2));
    // Another caller is not affected.
    let _bob = streams.open(Audience::Manager("ana".into()), 0, long)?;
    // Hanging up ends the stream's task, which lets go of its place.
    drop(first);
    testkit::eventually(WITHIN, "a place freed", || {
        let open = streams.open(ana(), 0, long).ok();
        async move { Ok(open.map(|_| ())) }
    })
    .await?;
    stop.cancel();
    Ok(())
}
