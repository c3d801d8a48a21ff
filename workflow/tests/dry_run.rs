//! The dry run of a changed spec over recorded tickets (`workflow simulate`) against a real
//! PostgreSQL: tickets built through the store's API as the engine builds them under an old spec
//! (the inbound transaction classifying with it, readiness, replies, escalation rounds, an SLA
//! breach, closes by a manager and on silence), their facts moved to chosen instants, then
//! replayed through a new spec; every difference is checked exactly.

use chrono::{DateTime, Duration, Utc};
use spec::checker::CheckedSpec;
use spec::simulate::{DifferenceKind, DryRun, dry_run_recorded};
use spec::{Spec, TicketSpec};
use sqlx::PgPool;
use testkit::fixtures::{manager, web_message};
use tickets::PgStore;
use tickets::simulation::{SimulationPeriod, TicketFacts};
use uuid::Uuid;

const AFC: &str = "version: 1\nafc:\n  provider: builtin\n  rules:\n    - name: card\n      detector: card_number\n\
    queues:\n  general: {}\n  cards: {}\n\
    calendars:\n  office:\n    timezone: Europe/Moscow\n    weekdays: [mon, tue, wed, thu, fri]\n    hours: \"09:00-18:00\"\n";

/// What the tickets were recorded under: no classification rule, escalation every hour, a 1h SLA
/// on the clock, silence after 1h.
fn old_spec() -> anyhow::Result<TicketSpec> {
    let text = format!(
        "{AFC}classify:\n  default: {{ category: general, priority: normal, queue: general }}\n\
         timers:\n  escalate_after: 1h\n  first_response_within: 2h\n  auto_close_after_client_silence: 1h\n"
    );
    Ok(Spec::parse("old.yaml", &text)?.ticket)
}

/// The change: cards get a queue of their own at high priority, escalation after 30 minutes,
/// the SLA 1h of business hours, silence after 4h.
fn new_spec() -> anyhow::Result<TicketSpec> {
    let text = format!(
        "{AFC}classify:\n  default: {{ category: general, priority: normal, queue: general }}\n  rules:\n\
         \x20   - name: cards\n      keywords: [card]\n      set: {{ category: cards, priority: high, queue: cards }}\n\
         timers:\n  escalate_after: 30m\n  first_response_within: {{ after: 1h, calendar: office }}\n\
         \x20 auto_close_after_client_silence: 4h\n"
    );
    Ok(Spec::parse("new.yaml", &text)?.ticket)
}

/// Monday 2026-11-23 07:00 UTC, 10:00 in Moscow.
fn t0() -> DateTime<Utc> {
    "2026-11-23T07:00:00Z".parse().expect("an instant")
}

fn min(n: i64) -> Duration {
    Duration::minutes(n)
}

struct Fixture {
    store: PgStore,
    pool: PgPool,
    check: CheckedSpec,
}

/// When a ticket's facts happened.
struct Dates {
    queued: DateTime<Utc>,
    assigned: Option<DateTime<Utc>>,
    replied: Option<DateTime<Utc>>,
    closed: Option<DateTime<Utc>>,
}

impl Fixture {
    /// The client writes `body`; a ready manager takes the ticket at once when `ready`.
    async fn ticket(&self, client: &str, body: &str, ready: bool) -> anyhow::Result<Uuid> {
        if ready {
            self.store.set_ready(&manager("m1"), 50).await?;
        }
        self.store
            .intake_batch(&[web_message(client, body)], &[], Some(&self.check))
            .await?;
        Ok(
            sqlx::query_scalar(
                "SELECT id FROM tickets WHERE client_id = $1 AND status <> 'closed'",
            )
            .bind(client)
            .fetch_one(&self.pool)
            .await?,
        )
    }

    async fn reply(&self, ticket: Uuid) -> anyhow::Result<()> {
        self.store
            .send_reply(&manager("m1"), ticket, &Uuid::new_v4().to_string(), "Hello")
            .await?;
        Ok(())
    }

    async fn close(&self, ticket: Uuid, reason: &str) -> anyhow::Result<()> {
        self.store
            .close_ticket(ticket, reason, "Closed.", None)
            .await?;
        Ok(())
    }

    /// Moves the ticket's facts (one client message, at most one reply) to `d`.
    async fn date(&self, ticket: Uuid, d: &Dates) -> anyhow::Result<()> {
        sqlx::query(
            "UPDATE tickets SET created_at = $2, waiting_since = $2, first_response_at = $3,
                    closed_at = CASE WHEN closed_at IS NULL THEN NULL ELSE $4 END
             WHERE id = $1",
        )
        .bind(ticket)
        .bind(d.queued)
        .bind(d.replied)
        .bind(d.closed)
        .execute(&self.pool)
        .await?;
        sqlx::query(
            "UPDATE messages SET created_at = $2 WHERE ticket_id = $1 AND author = 'client'",
        )
        .bind(ticket)
        .bind(d.queued)
        .execute(&self.pool)
        .await?;
        sqlx::query(
            "UPDATE messages SET created_at = COALESCE($2, created_at)
             WHERE ticket_id = $1 AND author = 'manager'",
        )
        .bind(ticket)
        .bind(d.replied)
        .execute(&self.pool)
        .await?;
        sqlx::query(
            "UPDATE events SET created_at = COALESCE($2, created_at)
             WHERE ticket_id = $1 AND kind = 'ticket_assigned'",
        )
        .bind(ticket)
        .bind(d.assigned)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

/// Tickets recorded under the old spec (F under an earlier version that closed on a day's
/// silence), each made to differ under the new one:
/// - A "my card is blocked": taken after 5 min, answered at 6, resolved at 60 (queue and
///   priority change);
/// - B: queued at 10, waited until 140 (hourly rounds at 70 and 130, SLA breached at 130),
///   answered at 141, resolved at 200 (half-hourly rounds: four);
/// - C: queued Friday 17:30 Moscow, answered Monday 09:20 Moscow (63 hours on the clock, 50
///   business minutes): recorded breach, avoided in business hours;
/// - D: answered at 2, auto-closed at 62 and rated at 70; the client wrote again at 180 (before
///   4h: avoided);
/// - F: answered at 2, the client silent, resolved by the manager at 600 (auto-close added at 242);
/// - G: waited 40 min, answered at 41, resolved at 90 (a 30-minute round added);
/// - H: answered at 90 (within 2h on the clock, not 1h of business time: breach added).
async fn recorded(fx: &Fixture) -> anyhow::Result<Vec<(char, Uuid)>> {
    let t = t0();
    let a = fx.ticket("web:a", "my card is blocked", true).await?;
    fx.reply(a).await?;
    fx.close(a, "resolved by m1").await?;
    fx.date(
        a,
        &Dates {
            queued: t,
            assigned: Some(t + min(5)),
            replied: Some(t + min(6)),
            closed: Some(t + min(60)),
        },
    )
    .await?;

    // The hourly rounds raised B from normal to urgent.
    let b = fx.ticket("web:b", "hello", false).await?;
    anyhow::ensure!(fx.store.escalate(b, 1).await?.is_some(), "B waits");
    fx.store.escalate(b, 2).await?;
    fx.store.record_sla_breach(b).await?;
    fx.store.set_ready(&manager("m1"), 50).await?;
    fx.reply(b).await?;
    fx.close(b, "resolved by m1").await?;
    fx.date(
        b,
        &Dates {
            queued: t + min(10),
            assigned: Some(t + min(140)),
            replied: Some(t + min(141)),
            closed: Some(t + min(200)),
        },
    )
    .await?;

    let friday: DateTime<Utc> = "2026-11-27T14:30:00Z".parse()?;
    let monday: DateTime<Utc> = "2026-11-30T06:20:00Z".parse()?;
    let c = fx.ticket("web:c", "hello", true).await?;
    fx.store.record_sla_breach(c).await?;
    fx.reply(c).await?;
    fx.close(c, "resolved by m1").await?;
    fx.date(
        c,
        &Dates {
            queued: friday,
            assigned: Some(friday + min(1)),
            replied: Some(monday),
            closed: Some(monday + min(30)),
        },
    )
    .await?;

    let d = fx.ticket("web:d", "hello", true).await?;
    fx.reply(d).await?;
    fx.store
        .close_ticket(
            d,
            "auto_closed: client silent",
            "Closed.",
            Some("Rate us 1-5"),
        )
        .await?;
    // The client answers the rating question: recorded on the closed ticket, not writing again.
    fx.store
        .intake_batch(&[web_message("web:d", "5")], &[], Some(&fx.check))
        .await?;
    fx.date(
        d,
        &Dates {
            queued: t,
            assigned: Some(t + min(1)),
            replied: Some(t + min(2)),
            closed: Some(t + min(62)),
        },
    )
    .await?;
    sqlx::query("UPDATE messages SET created_at = $2 WHERE ticket_id = $1 AND body = '5'")
        .bind(d)
        .bind(t + min(70))
        .execute(&fx.pool)
        .await?;
    // The client wrote again (a ticket of its own, opened after the period).
    let d2 = fx.ticket("web:d", "hello again", false).await?;
    fx.close(d2, "resolved by m1").await?;
    fx.date(
        d2,
        &Dates {
            queued: t + min(180),
            assigned: None,
            replied: None,
            closed: Some(t + min(190)),
        },
    )
    .await?;
    sqlx::query("UPDATE tickets SET created_at = $2 WHERE id = $1")
        .bind(d2)
        .bind(t + Duration::days(30))
        .execute(&fx.pool)
        .await?;

    let f = fx.ticket("web:f", "hello", true).await?;
    fx.reply(f).await?;
    fx.close(f, "resolved by m1").await?;
    fx.date(
        f,
        &Dates {
            queued: t,
            assigned: Some(t + min(1)),
            replied: Some(t + min(2)),
            closed: Some(t + min(600)),
        },
    )
    .await?;

    let g = fx.ticket("web:g", "hello", true).await?;
    fx.reply(g).await?;
    fx.close(g, "resolved by m1").await?;
    fx.date(
        g,
        &Dates {
            queued: t,
            assigned: Some(t + min(40)),
            replied: Some(t + min(41)),
            closed: Some(t + min(90)),
        },
    )
    .await?;

    let h = fx.ticket("web:h", "hello", true).await?;
    fx.reply(h).await?;
    fx.close(h, "resolved by m1").await?;
    fx.date(
        h,
        &Dates {
            queued: t,
            assigned: Some(t + min(1)),
            replied: Some(t + min(90)),
            closed: Some(t + min(120)),
        },
    )
    .await?;
    Ok(vec![
        ('a', a),
        ('b', b),
        ('c', c),
        ('d', d),
        ('f', f),
        ('g', g),
        ('h', h),
    ])
}

fn period() -> anyhow::Result<SimulationPeriod> {
    Ok(SimulationPeriod::new(
        t0() - Duration::hours(1),
        t0() + Duration::days(7),
    )?)
}

async fn fixture(pool: PgPool) -> anyhow::Result<Fixture> {
    Ok(Fixture {
        store: PgStore::from_pool(pool.clone()),
        pool,
        check: CheckedSpec::compile(&old_spec()?)?,
    })
}

/// Each kind with its tickets, as letters, and their before → after, by letter.
fn differences(run: &DryRun, names: &[(char, Uuid)]) -> Vec<(DifferenceKind, Vec<String>)> {
    let name = |id: Uuid| {
        names
            .iter()
            .find(|(_, t)| *t == id)
            .map_or('?', |(n, _)| *n)
    };
    run.differences
        .iter()
        .filter(|d| d.tickets > 0)
        .map(|d| {
            assert_eq!(d.tickets, u64::try_from(d.examples.len()).unwrap_or(0));
            // Tickets opened at the same instant come in id order: sort by name.
            let mut examples: Vec<String> = d
                .examples
                .iter()
                .map(|e| format!("{} {} -> {}", name(e.ticket_id), e.before, e.after))
                .collect();
            examples.sort();
            (d.kind, examples)
        })
        .collect()
}

#[sqlx::test(migrator = "tickets::store::MIGRATOR")]
async fn the_facts_of_a_period_are_read_as_the_engine_recorded_them(
    pool: PgPool,
) -> anyhow::Result<()> {
    let fx = fixture(pool).await?;
    let names = recorded(&fx).await?;
    let read = fx.store.recorded_tickets(&period()?, 100).await?;
    assert!(!read.truncated);
    let by = |n: char| -> &TicketFacts {
        let id = names.iter().find(|(c, _)| *c == n).map(|(_, t)| *t);
        read.tickets
            .iter()
            .find(|f| Some(f.ticket_id) == id)
            .expect("the ticket was read")
    };
    assert_eq!(
        read.tickets.len(),
        7,
        "the client's later ticket is after the period"
    );
    let b = by('b');
    assert_eq!((b.escalations, b.priority, b.sla_breached), (2, 3, true));
    assert_eq!(b.first_assigned_at, Some(t0() + min(140)));
    assert_eq!(b.first_text.as_deref(), Some("hello"));
    let d = by('d');
    assert!(d.auto_closed());
    assert_eq!(d.replies, vec![t0() + min(2)]);
    assert_eq!(
        d.client_messages,
        vec![t0()],
        "the rating is not a message of the chat"
    );
    let rated: Option<i16> = sqlx::query_scalar("SELECT rating FROM tickets WHERE id = $1")
        .bind(d.ticket_id)
        .fetch_one(&fx.pool)
        .await?;
    assert_eq!(rated, Some(5));
    assert_eq!(d.client_wrote_again_at, Some(t0() + min(180)));
    assert!(by('c').sla_breached);
    assert_eq!(by('a').queue, "general");

    let few = fx.store.recorded_tickets(&period()?, 3).await?;
    assert_eq!(few.tickets.len(), 3);
    assert!(few.truncated, "seven tickets, three read");
    Ok(())
}

#[sqlx::test(migrator = "tickets::store::MIGRATOR")]
async fn the_old_spec_replays_what_happened_and_the_new_one_lists_each_change(
    pool: PgPool,
) -> anyhow::Result<()> {
    let fx = fixture(pool).await?;
    let names = recorded(&fx).await?;
    let same = dry_run_recorded(&fx.store, &old_spec()?, &period()?, 100, 10).await?;
    assert_eq!(
        differences(&same, &names),
        vec![(
            DifferenceKind::AutoCloseAdded,
            vec![format!(
                "f resolved by m1 at {} -> auto-closed at {}",
                (t0() + min(600)).to_rfc3339(),
                (t0() + min(62)).to_rfc3339()
            )]
        )],
        "the spec the tickets ran under changes nothing but F, recorded under a day's silence"
    );
    assert_eq!((same.scanned, same.simulated), (7, 7));

    let run = dry_run_recorded(&fx.store, &new_spec()?, &period()?, 100, 10).await?;
    assert_eq!(
        differences(&run, &names),
        vec![
            (
                DifferenceKind::QueueChanged,
                vec!["a general -> cards".to_owned()]
            ),
            (
                DifferenceKind::PriorityChanged,
                vec!["a normal -> high".to_owned(), "g normal -> high".to_owned()]
            ),
            (
                DifferenceKind::EscalationsAdded,
                vec!["b 2 -> 4".to_owned(), "g 0 -> 1".to_owned()]
            ),
            (
                DifferenceKind::SlaBreachAdded,
                vec!["h met -> breached".to_owned()]
            ),
            (
                DifferenceKind::SlaBreachAvoided,
                vec!["c breached -> met".to_owned()]
            ),
            (
                DifferenceKind::AutoCloseAdded,
                vec![format!(
                    "f resolved by m1 at {} -> auto-closed at {}",
                    (t0() + min(600)).to_rfc3339(),
                    (t0() + min(242)).to_rfc3339()
                )]
            ),
            (
                DifferenceKind::AutoCloseAvoided,
                vec![format!(
                    "d auto_closed: client silent at {} -> open when the client wrote again at {}",
                    (t0() + min(62)).to_rfc3339(),
                    (t0() + min(180)).to_rfc3339()
                )]
            ),
        ]
    );
    assert_eq!(
        (run.before.escalations, run.after.escalations),
        (2, 5),
        "B's two hourly rounds become four half-hourly ones, G gets one"
    );
    assert_eq!((run.before.sla_breaches, run.after.sla_breaches), (2, 2));
    assert_eq!((run.before.auto_closes, run.after.auto_closes), (1, 1));
    Ok(())
}
