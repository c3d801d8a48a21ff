//! Email end to end, beyond the basics of `email.rs`: SMTP refusals are retried with backoff and
//! end in one delivered mail or in a recorded failure (ledger row and `delivery_failed` event); a
//! reply to a closed ticket opens a new ticket of the same client, whose chat stays one; a subject
//! ticket reference threads only with its secret tag; and both servers are reached over TLS with
//! a private CA (IMAP implicit TLS and STARTTLS, SMTP STARTTLS).

use std::time::Duration;

use anyhow::Context;
use e2e::email::{MailOptions, MailServer, PASSWORD};
use e2e::manager::Manager;
use e2e::{Engine, Stack, eventually};
use serde_json::Value;
use tickets::{Delivery, PgStore, Role};
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(60);
const BANK: &str = "support@bank.test";

/// A manager `id` of `engine`'s gateway.
async fn connect_manager(engine: &Engine, stack: &Stack, id: &str) -> anyhow::Result<Manager> {
    Manager::connect(&engine.grpc, stack.token(Role::Manager, id, "Alice")?).await
}

/// Sends [`plain_mail`] from `from` to the bank.
async fn send_plain(
    mail: &MailServer,
    from: &str,
    message_id: &str,
    subject: &str,
    headers: &str,
    body: &str,
) -> anyhow::Result<()> {
    let raw = plain_mail(from, message_id, subject, headers, body);
    mail.send(from, BANK, raw.as_bytes()).await
}

fn plain_mail(from: &str, message_id: &str, subject: &str, headers: &str, body: &str) -> String {
    format!(
        "From: {from}\r\nTo: {BANK}\r\nSubject: {subject}\r\nMessage-ID: <{message_id}>\r\n\
         {headers}MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n"
    )
}

/// The mail channel's settings for an engine against `mail` (plain TCP).
fn mail_env(mail: &MailServer) -> Vec<(&'static str, String)> {
    vec![
        ("INBOX_IMAP_ADDR", mail.imap_addr.clone()),
        ("INBOX_IMAP_USER", BANK.into()),
        ("INBOX_IMAP_PASSWORD", PASSWORD.into()),
        ("INBOX_SMTP_ADDR", mail.smtp_addr.clone()),
        ("INBOX_MAIL_FROM", BANK.into()),
    ]
}

/// Waits until the delivery ledger of `client_id` holds a finished (sent or failed) row.
async fn finished_delivery(store: &PgStore, client_id: &str) -> anyhow::Result<Delivery> {
    eventually(
        WAIT,
        &format!("a finished delivery to {client_id}"),
        || async {
            let ledger = store.deliveries_of("email", client_id).await?;
            Ok(ledger
                .into_iter()
                .find(|d| d.status == "sent" || d.status == "failed"))
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transient_smtp_refusal_is_retried_into_one_mail_and_a_persistent_one_is_a_recorded_failure()
-> anyhow::Result<()> {
    let stack = Stack::from_env().await?;
    let run = Uuid::new_v4().simple().to_string();
    let flaky = format!("flaky-{run}@client.test");
    let stuck = format!("stuck-{run}@client.test");
    let mail = MailServer::start(&[BANK, &flaky, &stuck]).await?;
    // 451 (try again later) twice, then accepted; and 451 on every attempt.
    mail.refuse(&flaky, 451, Some(2))?;
    mail.refuse(&stuck, 451, None)?;
    let mut env = mail_env(&mail);
    env.extend([
        ("INBOX_SMTP_RETRY_ATTEMPTS", "3".to_owned()),
        ("INBOX_SMTP_RETRY_BACKOFF_MS", "50".to_owned()),
        ("INBOX_SMTP_RETRY_MAX_BACKOFF_MS", "200".to_owned()),
    ]);
    let engine = Engine::start_with(&stack, &env).await?;
    let store = PgStore::connect(&engine.database_url).await?;
    let alice_id = format!("alice-{run}");
    let mut alice = connect_manager(&engine, &stack, &alice_id).await?;

    // The assignment notice to the flaky address: refused twice, delivered on the third try.
    let flaky_id = format!("email:{flaky}");
    send_plain(
        &mail,
        &flaky,
        &format!("f-{run}@client.test"),
        "help",
        "",
        "flaky here",
    )
    .await?;
    alice.set_ready().await?;
    alice
        .wait_for_body(&flaky_id, "a message", |b| b == "flaky here")
        .await?;
    let delivered = finished_delivery(&store, &flaky_id).await?;
    assert_eq!(
        (delivered.status.as_str(), delivered.attempts),
        ("sent", 3),
        "{delivered:?}"
    );
    assert_eq!(
        mail.smtp_attempts(&flaky)?,
        ["refused 451", "refused 451", "accepted"]
    );
    let inbox = mail.mails(&flaky).await?;
    assert_eq!(inbox.len(), 1, "exactly one mail delivered: {inbox:?}");
    assert_eq!(store.deliveries_of("email", &flaky_id).await?.len(), 1);

    // Refused on every attempt: after the configured 3, a failed row and a delivery_failed event
    // for the ticket's manager, in the outbox like every other event.
    let stuck_id = format!("email:{stuck}");
    send_plain(
        &mail,
        &stuck,
        &format!("s-{run}@client.test"),
        "help",
        "",
        "stuck here",
    )
    .await?;
    alice.set_ready().await?;
    let stuck_ticket = alice
        .wait_for_body(&stuck_id, "a message", |b| b == "stuck here")
        .await?
        .0;
    let failed = finished_delivery(&store, &stuck_id).await?;
    assert_eq!(
        (failed.status.as_str(), failed.attempts),
        ("failed", 3),
        "{failed:?}"
    );
    assert!(
        failed.detail.as_deref().unwrap_or_default().contains("451"),
        "{failed:?}"
    );
    assert_eq!(mail.smtp_attempts(&stuck)?, ["refused 451"; 3]);
    assert!(mail.mails(&stuck).await?.is_empty());
    let events: Vec<(Option<Uuid>, Option<String>, bool, Value)> = sqlx::query_as(
        "SELECT ticket_id, manager_id, client_visible, payload FROM events
         WHERE kind = 'delivery_failed' AND client_id = $1",
    )
    .bind(&stuck_id)
    .fetch_all(store.pool())
    .await?;
    assert_eq!(events.len(), 1, "{events:?}");
    let (ticket, manager, client_visible, payload) = &events[0];
    assert_eq!(ticket.map(|t| t.to_string()), Some(stuck_ticket));
    assert_eq!(manager.as_deref(), Some(alice_id.as_str()));
    assert!(!client_visible);
    assert_eq!(payload["channel"], "email");
    assert_eq!(payload["event_seq"], failed.event_seq);
    assert_eq!(payload["event_kind"], "manager_assigned");
    assert_eq!(payload["attempts"], 3);
    // The flaky client's success left no failure event.
    let flaky_failures: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE kind = 'delivery_failed' AND client_id = $1",
    )
    .bind(&flaky_id)
    .fetch_one(store.pool())
    .await?;
    assert_eq!(flaky_failures, 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mail_answering_a_closed_ticket_opens_a_new_ticket_of_the_same_client_in_one_chat()
-> anyhow::Result<()> {
    let stack = Stack::from_env().await?;
    let run = Uuid::new_v4().simple().to_string();
    let ivan = format!("ivan-{run}@client.test");
    let ivan_alt = format!("ivan.alt-{run}@client.test");
    let mail = MailServer::start(&[BANK, &ivan]).await?;
    let engine = Engine::start_with(&stack, &mail_env(&mail)).await?;
    let client_id = format!("email:{ivan}");
    let mut alice = connect_manager(&engine, &stack, &format!("alice-{run}")).await?;
    alice.set_ready().await?;

    let m1 = format!("m1-{run}@client.test");
    send_plain(&mail, &ivan, &m1, "transfer", "", "First question").await?;
    let first_ticket = alice
        .wait_for_body(&client_id, "a message", |b| b == "First question")
        .await?
        .0;
    alice
        .reply(&first_ticket, "First answer", "First answer")
        .await?;
    let answer = mail
        .wait_for_mail(&ivan, WAIT, |m| m.text().contains("First answer"))
        .await?;
    let answer_id = answer.header("Message-ID").context("Message-ID")?;
    alice.resolve(&first_ticket).await?;
    mail.wait_for_mail(&ivan, WAIT, |m| {
        m.text().contains("Your request was resolved")
    })
    .await?;

    // The client answers the closed ticket's mail, from another address of theirs.
    let m2 = format!("m2-{run}@client.test");
    send_plain(
        &mail,
        &ivan_alt,
        &m2,
        "Re: transfer",
        &format!("In-Reply-To: {answer_id}\r\nReferences: <{m1}> {answer_id}\r\n"),
        "Another problem now\r\n\r\n> First answer",
    )
    .await?;
    alice.set_ready().await?;
    let second_ticket = alice
        .wait_for_body(&client_id, "a message", |b| b == "Another problem now")
        .await?
        .0;
    assert_ne!(
        second_ticket, first_ticket,
        "a closed ticket is never reopened"
    );

    // The new ticket's mail continues the same mail thread.
    alice
        .reply(&second_ticket, "Second answer", "Second answer")
        .await?;
    let second = mail
        .wait_for_mail(&ivan, WAIT, |m| m.text().contains("Second answer"))
        .await?;
    assert_eq!(
        second.header("In-Reply-To").as_deref(),
        Some(format!("<{m2}>").as_str())
    );
    let refs = second.header("References").unwrap_or_default();
    assert!(
        refs.contains(&format!("<{m1}>")) && refs.contains(&answer_id),
        "{refs}"
    );
    let short = &second_ticket.replace('-', "")[..8];
    assert!(
        second
            .header("Subject")
            .unwrap_or_default()
            .contains(&format!("[#{short}-")),
        "{:?}",
        second.header("Subject")
    );

    // The client's chat (the store's client history, which the web chat serves its own clients
    // from; an email client's id is never a web token's subject) is one conversation across
    // both tickets, in order.
    let history = PgStore::connect(&engine.database_url)
        .await?
        .client_history(&client_id, None, 50)
        .await?;
    let messages = &history.messages;
    let find = |body: &str| {
        messages
            .iter()
            .position(|m| m.body == body)
            .with_context(|| format!("{body:?} is not in the history: {messages:#?}"))
    };
    let order = [
        find("First question")?,
        find("First answer")?,
        find("Another problem now")?,
        find("Second answer")?,
    ];
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{order:?}");
    let ticket_of = |i: usize| messages[i].ticket_id.map(|t| t.to_string());
    assert_eq!(ticket_of(order[0]).as_deref(), Some(first_ticket.as_str()));
    assert_eq!(ticket_of(order[1]).as_deref(), Some(first_ticket.as_str()));
    assert_eq!(ticket_of(order[2]).as_deref(), Some(second_ticket.as_str()));
    assert_eq!(ticket_of(order[3]).as_deref(), Some(second_ticket.as_str()));
    Ok(())
}

/// The client id the inbound consumer stored a message with `body` under.
async fn client_of_body(store: &PgStore, body: &str) -> anyhow::Result<String> {
    eventually(WAIT, &format!("the message {body:?} stored"), || async {
        Ok(
            sqlx::query_scalar::<_, String>("SELECT client_id FROM messages WHERE body = $1")
                .bind(body)
                .fetch_optional(store.pool())
                .await?,
        )
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subject_ticket_reference_threads_a_stranger_only_with_its_secret_tag()
-> anyhow::Result<()> {
    let stack = Stack::from_env().await?;
    let run = Uuid::new_v4().simple().to_string();
    let ivan = format!("ivan-{run}@client.test");
    let mail = MailServer::start(&[BANK, &ivan]).await?;
    let engine = Engine::start_with(&stack, &mail_env(&mail)).await?;
    let store = PgStore::connect(&engine.database_url).await?;
    let client_id = format!("email:{ivan}");
    let mut alice = connect_manager(&engine, &stack, &format!("alice-{run}")).await?;
    alice.set_ready().await?;

    send_plain(
        &mail,
        &ivan,
        &format!("m1-{run}@client.test"),
        "card",
        "",
        "My card",
    )
    .await?;
    let ticket = alice
        .wait_for_body(&client_id, "a message", |b| b == "My card")
        .await?
        .0;
    alice.reply(&ticket, "Which card?", "Which card?").await?;
    let reply = mail
        .wait_for_mail(&ivan, WAIT, |m| m.text().contains("Which card?"))
        .await?;
    let subject = reply.header("Subject").context("Subject")?;
    let reference = subject
        .split("[#")
        .nth(1)
        .and_then(|r| r.split(']').next())
        .with_context(|| format!("no ticket reference in {subject:?}"))?
        .to_owned();
    let (short, tag) = reference
        .split_once('-')
        .with_context(|| format!("untagged reference {reference:?}"))?;
    assert_eq!(short, &ticket.replace('-', "")[..8]);
    assert_eq!(tag.len(), 8, "{reference}");
    // The outbound Message-ID carries a tag too: ticket-<id>.<seq>.<16 hex>@domain.
    let message_id = reply.header("Message-ID").context("Message-ID")?;
    let tail = message_id
        .strip_prefix(&format!("<ticket-{ticket}."))
        .and_then(|r| r.strip_suffix("@bank.test>"))
        .with_context(|| message_id.clone())?;
    let (_seq, id_tag) = tail.split_once('.').with_context(|| message_id.clone())?;
    assert!(
        id_tag.len() == 16 && id_tag.bytes().all(|b| b.is_ascii_hexdigit()),
        "{message_id}"
    );

    // Strangers naming the ticket without its tag, or with a wrong one, get tickets of their own.
    let mallory = format!("mallory-{run}@evil.test");
    let eve = format!("eve-{run}@evil.test");
    let wrong_tag = if tag == "00000000" {
        "00000001"
    } else {
        "00000000"
    };
    for (from, subject, body) in [
        (
            &mallory,
            format!("Re: card [#{short}]"),
            "untagged reference",
        ),
        (
            &eve,
            format!("Re: card [#{short}-{wrong_tag}]"),
            "wrongly tagged reference",
        ),
    ] {
        send_plain(
            &mail,
            from,
            &format!("{}@evil.test", Uuid::new_v4()),
            &subject,
            "",
            body,
        )
        .await?;
        assert_eq!(
            client_of_body(&store, body).await?,
            format!("email:{from}"),
            "{subject}"
        );
    }

    // Another address of the client with the tagged reference threads into the open ticket.
    let phone = format!("ivan.phone-{run}@client.test");
    send_plain(
        &mail,
        &phone,
        &format!("p-{run}@client.test"),
        &format!("Re: card [#{reference}]"),
        "",
        "the visa one",
    )
    .await?;
    assert_eq!(client_of_body(&store, "the visa one").await?, client_id);
    let same = alice
        .wait_for_body(&client_id, "a message", |b| b == "the visa one")
        .await?
        .0;
    assert_eq!(same, ticket);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_is_imported_over_imap_tls_and_sent_over_smtp_starttls_trusting_a_private_ca()
-> anyhow::Result<()> {
    let stack = Stack::from_env().await?;
    let run = Uuid::new_v4().simple().to_string();
    let ivan = format!("ivan-{run}@client.test");
    let mail = MailServer::start_with(&[BANK, &ivan], MailOptions { tls: true }).await?;
    let ca = mail
        .ca_file
        .clone()
        .context("a CA file")?
        .display()
        .to_string();
    let imaps = mail.imaps_addr.clone().context("an IMAPS port")?;
    let submission = mail.smtp_starttls_addr.clone().context("a STARTTLS port")?;
    let mut engine = Engine::start_with(
        &stack,
        &[
            ("INBOX_IMAP_ADDR", imaps),
            ("INBOX_IMAP_TLS", "implicit".into()),
            ("INBOX_IMAP_CA_FILE", ca.clone()),
            ("INBOX_IMAP_USER", BANK.into()),
            ("INBOX_IMAP_PASSWORD", PASSWORD.into()),
            // This port refuses MAIL FROM before STARTTLS: a delivered mail went over TLS.
            ("INBOX_SMTP_ADDR", submission),
            ("INBOX_SMTP_TLS", "starttls".into()),
            ("INBOX_SMTP_CA_FILE", ca),
            ("INBOX_MAIL_FROM", BANK.into()),
        ],
    )
    .await?;
    let client_id = format!("email:{ivan}");
    let mut alice = connect_manager(&engine, &stack, &format!("alice-{run}")).await?;
    alice.set_ready().await?;

    send_plain(
        &mail,
        &ivan,
        &format!("t1-{run}@client.test"),
        "tls",
        "",
        "over TLS",
    )
    .await?;
    let ticket = alice
        .wait_for_body(&client_id, "a message", |b| b == "over TLS")
        .await?
        .0;
    alice
        .reply(&ticket, "Answered over STARTTLS", "Answered over STARTTLS")
        .await?;
    mail.wait_for_mail(&ivan, WAIT, |m| m.text().contains("Answered over STARTTLS"))
        .await?;

    // IMAP with STARTTLS on the plain port works too.
    engine.kill_communication().await?;
    engine.set_env("INBOX_IMAP_ADDR", Some(mail.imap_addr.clone()));
    engine.set_env("INBOX_IMAP_TLS", Some("starttls".into()));
    engine.start_communication().await?;
    send_plain(
        &mail,
        &ivan,
        &format!("t2-{run}@client.test"),
        "tls",
        "",
        "over STARTTLS",
    )
    .await?;
    alice
        .wait_for_body(&client_id, "a message", |b| b == "over STARTTLS")
        .await?;
    Ok(())
}
