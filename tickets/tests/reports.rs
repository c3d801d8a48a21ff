//! Supervisors' reports against a real PostgreSQL: tickets built through the store's own API (the
//! inbound transaction, readiness, replies, escalation, SLA breach, close, rating), then each of
//! their recorded facts moved to a chosen instant, so every figure of every grouping is exact.

use chrono::{DateTime, Duration, Utc};
use sqlx::PgPool;
use testkit::fixtures::{manager, web_message};
use tickets::inbound::MessageCheck;
use tickets::reports::{GroupBy, Report, ReportQuery, ReportRow};
use tickets::{PgStore, TicketClassification, Verdict};
use uuid::Uuid;

/// Passes everything; a message about a card goes to the `cards` queue.
struct Classify;

impl MessageCheck for Classify {
    fn version(&self) -> &str {
        "test"
    }
    fn verdict(&self, _: &str) -> Verdict {
        Verdict::Passed
    }
    fn classify(&self, body: &str) -> TicketClassification {
        TicketClassification {
            queue: if body.contains("card") {
                "cards"
            } else {
                "general"
            }
            .into(),
            ..TicketClassification::default()
        }
    }
    fn blocked_warning(&self) -> &str {
        "blocked"
    }
}

/// Monday 2026-03-02 00:00 UTC: the period is three days from here.
fn t0() -> DateTime<Utc> {
    "2026-03-02T00:00:00Z".parse().expect("an instant")
}

async fn write(store: &PgStore, client: &str, body: &str) -> anyhow::Result<()> {
    store
        .intake_batch(&[web_message(client, body)], &[], Some(&Classify))
        .await?;
    Ok(())
}

async fn ticket_of(pool: &PgPool, client: &str) -> anyhow::Result<Uuid> {
    Ok(sqlx::query_scalar(
        "SELECT id FROM tickets WHERE client_id = $1 ORDER BY created_at LIMIT 1",
    )
    .bind(client)
    .fetch_one(pool)
    .await?)
}

/// Dates the ticket's opening and queueing at `opened`, and each of its events of kind `k` at
/// `opened + s` seconds, for every `(k, s)` of `facts`.
async fn date(
    pool: &PgPool,
    ticket: Uuid,
    opened: DateTime<Utc>,
    facts: &[(&str, i64)],
) -> anyhow::Result<()> {
    sqlx::query("UPDATE tickets SET created_at = $2, waiting_since = $2 WHERE id = $1")
        .bind(ticket)
        .bind(opened)
        .execute(pool)
        .await?;
    for (kind, secs) in facts {
        let moved =
            sqlx::query("UPDATE events SET created_at = $3 WHERE ticket_id = $1 AND kind = $2")
                .bind(ticket)
                .bind(kind)
                .bind(opened + Duration::seconds(*secs))
                .execute(pool)
                .await?
                .rows_affected();
        anyhow::ensure!(moved == 1, "{ticket}: {moved} events of kind {kind}");
    }
    Ok(())
}

/// Four tickets (`m1` and `m2` the managers; the period is [t0, t0 + 3 days)):
/// - A, web, general: opened t0+1h, assigned to m1 after 60 s, answered at 120 s, closed at 600 s, rated 5;
/// - B, telegram, cards: opened t0+2h, escalated at 100 s, SLA breached at 200 s, assigned to m2
///   at 300 s, answered at 400 s, closed at 1000 s, rated 2;
/// - C, email, general: opened t0+25h (the second day), assigned to m1 after 30 s, answered at 90 s;
/// - D, web, general: opened and assigned to m2 before the period, closed in it (t0+30min).
async fn four_tickets(pool: &PgPool) -> anyhow::Result<()> {
    let store = PgStore::from_pool(pool.clone());
    let (m1, m2) = (manager("m1"), manager("m2"));
    let prompt = Some("How did we do? 1-5");

    store.set_ready(&m2, 3).await?;
    write(&store, "web:d", "hello").await?;
    let d = ticket_of(pool, "web:d").await?;
    store.close_ticket(d, "resolved", "Closed.", None).await?;

    write(&store, "tg:1", "my card is stuck").await?;
    let b = ticket_of(pool, "tg:1").await?;
    store.escalate(b, 1).await?;
    store.record_sla_breach(b).await?;
    store.set_ready(&m2, 3).await?;
    store.send_reply(&m2, b, "r1", "Let me see").await?;
    store.close_ticket(b, "resolved", "Closed.", prompt).await?;
    write(&store, "tg:1", "2").await?;

    store.set_ready(&m1, 3).await?;
    write(&store, "web:a", "hello").await?;
    let a = ticket_of(pool, "web:a").await?;
    store.send_reply(&m1, a, "r1", "Hello").await?;
    store.close_ticket(a, "resolved", "Closed.", prompt).await?;
    write(&store, "web:a", "5").await?;

    store.set_ready(&m1, 3).await?;
    write(&store, "email:c@client.test", "hello").await?;
    let c = ticket_of(pool, "email:c@client.test").await?;
    store.send_reply(&m1, c, "r1", "Hello").await?;

    let h = Duration::hours(1);
    date(
        pool,
        a,
        t0() + h,
        &[
            ("ticket_assigned", 60),
            ("ticket_responded", 120),
            ("ticket_closed", 600),
            ("satisfaction_recorded", 700),
        ],
    )
    .await?;
    date(
        pool,
        b,
        t0() + h * 2,
        &[
            ("ticket_escalated", 100),
            ("sla_breached", 200),
            ("ticket_assigned", 300),
            ("ticket_responded", 400),
            ("ticket_closed", 1000),
            ("satisfaction_recorded", 1100),
        ],
    )
    .await?;
    date(
        pool,
        c,
        t0() + h * 25,
        &[("ticket_assigned", 30), ("ticket_responded", 90)],
    )
    .await?;
    date(
        pool,
        d,
        t0() - h,
        &[("ticket_assigned", 600), ("ticket_closed", 5400)],
    )
    .await?;
    Ok(())
}

async fn report(pool: &PgPool, group_by: GroupBy, tz: &str) -> anyhow::Result<Report> {
    let q = ReportQuery::new(
        t0(),
        t0() + Duration::days(3),
        group_by,
        tickets::reports::time_zone(tz)?,
    )?;
    Ok(PgStore::from_pool(pool.clone()).report(&q).await?)
}

fn row<'a>(r: &'a Report, key: &str) -> &'a ReportRow {
    r.rows
        .iter()
        .find(|row| row.key == key)
        .unwrap_or_else(|| panic!("no row {key} in {:?}", r.rows))
}

/// (count, avg, p50, p90) with the seconds rounded to milliseconds.
fn spans(d: &tickets::reports::Durations) -> (i64, Option<f64>, Option<f64>, Option<f64>) {
    let ms = |s: Option<f64>| s.map(|s| (s * 1000.0).round() / 1000.0);
    (d.count, ms(d.avg_secs), ms(d.p50_secs), ms(d.p90_secs))
}

fn csat(r: &ReportRow) -> (i64, Option<f64>, Option<f64>) {
    (r.csat.count, r.csat.average, r.csat.satisfied_percent())
}

#[sqlx::test]
async fn a_report_by_queue_counts_each_fact_of_the_period_with_exact_times(
    pool: PgPool,
) -> anyhow::Result<()> {
    four_tickets(&pool).await?;
    let r = report(&pool, GroupBy::Queue, "").await?;
    let keys: Vec<&str> = r.rows.iter().map(|r| r.key.as_str()).collect();
    assert_eq!(keys, ["cards", "general"]);
    assert!(!r.truncated);

    let general = row(&r, "general");
    // A and C opened in the period; A and D (opened before it) closed in it.
    assert_eq!((general.opened, general.closed), (2, 2));
    assert_eq!(
        spans(&general.first_response),
        (2, Some(105.0), Some(105.0), Some(117.0))
    );
    assert_eq!(
        spans(&general.resolution),
        (2, Some(3000.0), Some(3000.0), Some(4920.0))
    );
    // D's assignment was before the period.
    assert_eq!(
        spans(&general.waiting),
        (2, Some(45.0), Some(45.0), Some(57.0))
    );
    assert_eq!((general.escalations, general.sla_breaches), (0, 0));
    assert_eq!(csat(general), (1, Some(5.0), Some(100.0)));

    let cards = row(&r, "cards");
    assert_eq!((cards.opened, cards.closed), (1, 1));
    assert_eq!(
        spans(&cards.first_response),
        (1, Some(400.0), Some(400.0), Some(400.0))
    );
    assert_eq!(spans(&cards.resolution).1, Some(1000.0));
    assert_eq!(spans(&cards.waiting).1, Some(300.0));
    assert_eq!((cards.escalations, cards.sla_breaches), (1, 1));
    assert_eq!(csat(cards), (1, Some(2.0), Some(0.0)));

    // The total is over every fact, not a sum of the groups' percentiles.
    assert_eq!((r.total.opened, r.total.closed), (3, 3));
    assert_eq!(
        spans(&r.total.first_response),
        (3, Some(203.333), Some(120.0), Some(344.0))
    );
    assert_eq!(csat(&r.total), (2, Some(3.5), Some(50.0)));
    Ok(())
}

#[sqlx::test]
async fn a_report_by_manager_credits_who_answered_held_or_closed_the_ticket(
    pool: PgPool,
) -> anyhow::Result<()> {
    four_tickets(&pool).await?;
    let r = report(&pool, GroupBy::Manager, "").await?;
    let keys: Vec<&str> = r.rows.iter().map(|r| r.key.as_str()).collect();
    assert_eq!(keys, ["m1", "m2"]);
    let m1 = row(&r, "m1");
    assert_eq!(m1.name, "Manager m1");
    assert_eq!((m1.opened, m1.closed), (2, 1));
    assert_eq!(spans(&m1.first_response).0, 2);
    assert_eq!(spans(&m1.waiting), (2, Some(45.0), Some(45.0), Some(57.0)));
    assert_eq!(csat(m1), (1, Some(5.0), Some(100.0)));
    let m2 = row(&r, "m2");
    // B's escalation and breach came before anyone had it: they count for m2, who took it.
    assert_eq!(
        (m2.opened, m2.closed, m2.escalations, m2.sla_breaches),
        (1, 2, 1, 1)
    );
    assert_eq!(
        spans(&m2.resolution),
        (2, Some(3200.0), Some(3200.0), Some(4960.0))
    );
    Ok(())
}

#[sqlx::test]
async fn a_report_by_channel_follows_the_clients_channel(pool: PgPool) -> anyhow::Result<()> {
    four_tickets(&pool).await?;
    let r = report(&pool, GroupBy::Channel, "").await?;
    let keys: Vec<&str> = r.rows.iter().map(|r| r.key.as_str()).collect();
    assert_eq!(keys, ["email", "telegram", "web"]);
    assert_eq!(
        (row(&r, "web").opened, row(&r, "web").closed),
        (1, 2),
        "A opened; A and D closed"
    );
    assert_eq!(row(&r, "telegram").escalations, 1);
    assert_eq!(spans(&row(&r, "email").first_response).1, Some(90.0));

    // Bounded: the first groups, and the report says it was cut.
    let q = ReportQuery::new(
        t0(),
        t0() + Duration::days(3),
        GroupBy::Channel,
        chrono_tz::Tz::UTC,
    )?
    .with_max_groups(2);
    let cut = PgStore::from_pool(pool.clone()).report(&q).await?;
    let keys: Vec<&str> = cut.rows.iter().map(|r| r.key.as_str()).collect();
    assert_eq!(keys, ["email", "telegram"]);
    assert!(cut.truncated);
    assert_eq!(cut.total.opened, 3, "the total is of every group");
    Ok(())
}

#[sqlx::test]
async fn a_report_by_day_has_every_local_day_of_the_period(pool: PgPool) -> anyhow::Result<()> {
    four_tickets(&pool).await?;
    let utc = report(&pool, GroupBy::Day, "UTC").await?;
    let days: Vec<(&str, i64, i64)> = utc
        .rows
        .iter()
        .map(|r| (r.key.as_str(), r.opened, r.closed))
        .collect();
    assert_eq!(
        days,
        [
            ("2026-03-02", 2, 3),
            ("2026-03-03", 1, 0),
            ("2026-03-04", 0, 0)
        ]
    );
    assert_eq!(spans(&row(&utc, "2026-03-03").first_response).1, Some(90.0));

    // In New York (UTC-5) the period starts on the evening of March 1st.
    let ny = report(&pool, GroupBy::Day, "America/New_York").await?;
    let days: Vec<(&str, i64, i64)> = ny
        .rows
        .iter()
        .map(|r| (r.key.as_str(), r.opened, r.closed))
        .collect();
    assert_eq!(
        days,
        [
            ("2026-03-01", 2, 3),
            ("2026-03-02", 1, 0),
            ("2026-03-03", 0, 0),
            ("2026-03-04", 0, 0)
        ]
    );
    Ok(())
}

#[sqlx::test]
async fn a_transfer_does_not_end_a_wait_twice(pool: PgPool) -> anyhow::Result<()> {
    let store = PgStore::from_pool(pool.clone());
    store.set_ready(&manager("m1"), 3).await?;
    write(&store, "web:a", "hello").await?;
    let a = ticket_of(&pool, "web:a").await?;
    store.set_ready(&manager("m2"), 3).await?;
    store.transfer_ticket(&manager("m1"), a, "m2").await?;
    let assigned: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE ticket_id = $1 AND kind = 'ticket_assigned'",
    )
    .bind(a)
    .fetch_one(&pool)
    .await?;
    assert_eq!(assigned, 2, "the transfer is a ticket_assigned too");
    let q = ReportQuery::new(
        Utc::now() - Duration::hours(1),
        Utc::now() + Duration::hours(1),
        GroupBy::Manager,
        chrono_tz::Tz::UTC,
    )?;
    let r = PgStore::from_pool(pool.clone()).report(&q).await?;
    assert_eq!(r.total.waiting.count, 1, "{:?}", r.rows);
    assert_eq!(row(&r, "m1").waiting.count, 1, "m1 got it first");
    Ok(())
}
