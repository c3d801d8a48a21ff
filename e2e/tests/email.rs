//! Email end to end: the three services against Dovecot (IMAP) and an SMTP server that delivers
//! into Dovecot. A client's mail (HTML only, UTF-8, an attachment) reaches the manager once; the
//! manager's reply arrives as a mail threaded to it; the client's answer from another address
//! threads back into the open ticket, and so does one that only names the ticket in its subject;
//! a crash of `communication` (with the import position lost)
//! imports every mail exactly once; an undeliverable reply is a recorded failed delivery. A mail
//! with a card number is imported (and blocked) and then leaves the inbox for the quarantine
//! folder (also from a server without MOVE), or is expunged; a mail over the size limit is never
//! downloaded and goes to the quarantine folder too. Sender authentication, against a DNS server
//! of the test's own: a DKIM-signed mail of a domain publishing DMARC joins its client's ticket;
//! a forged one with the same From: (unsigned, or signed with another key) becomes a separate
//! client marked unverified, or, under `quarantine`, is not imported and waits in the quarantine
//! folder; SPF counts once the bank's MX is named. A sender over their rate has the rest of their
//! mail held in the quarantine folder while another sender's still gets through.

use std::time::Duration;

use anyhow::Context;
use e2e::dns::DnsServer;
use e2e::email::{MailServer, PASSWORD, SigningDomain};
use e2e::manager::Manager;
use e2e::{Engine, Service, Stack, eventually};
use tickets::{PgStore, Role};
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(60);

/// An engine importing `bank`'s mailbox on `mail` over IMAP, with `extra` settings.
async fn imap_engine(
    stack: &Stack,
    mail: &MailServer,
    bank: &str,
    extra: &[(&str, String)],
) -> anyhow::Result<Engine> {
    let mut env = vec![
        ("INBOX_IMAP_ADDR", mail.imap_addr.clone()),
        ("INBOX_IMAP_USER", bank.to_owned()),
        ("INBOX_IMAP_PASSWORD", PASSWORD.to_owned()),
    ];
    env.extend(extra.iter().cloned());
    Engine::start_with(stack, &env).await
}

/// [`imap_engine`] that also sends as `bank` over `mail`'s SMTP.
async fn mail_engine(
    stack: &Stack,
    mail: &MailServer,
    bank: &str,
    extra: &[(&str, String)],
) -> anyhow::Result<Engine> {
    let mut env = vec![
        ("INBOX_SMTP_ADDR", mail.smtp_addr.clone()),
        ("INBOX_MAIL_FROM", bank.to_owned()),
    ];
    env.extend(extra.iter().cloned());
    imap_engine(stack, mail, bank, &env).await
}

/// The client's first mail: HTML only, UTF-8 subject and body, a PDF attached.
fn first_mail(from: &str, to: &str, message_id: &str) -> String {
    format!(
        "From: =?UTF-8?B?{name}?= <{from}>\r\nTo: {to}\r\n\
         Subject: =?UTF-8?B?{subject}?=\r\nMessage-ID: <{message_id}>\r\n\
         Date: Mon, 3 Jun 2024 10:00:00 +0000\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=\"mix\"\r\n\r\n\
         --mix\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n\
         <html><body><p>Здравствуйте! Мой <b>перевод</b> застрял.</p></body></html>\r\n\
         --mix\r\nContent-Type: application/pdf; name=\"statement.pdf\"\r\n\
         Content-Disposition: attachment; filename=\"statement.pdf\"\r\n\
         Content-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK\r\n--mix--\r\n",
        // "Иван Петров", "Перевод застрял"
        name = "0JjQstCw0L0g0J/QtdGC0YDQvtCy",
        subject = "0J/QtdGA0LXQstC+0LQg0LfQsNGB0YLRgNGP0Ls=",
    )
}

fn plain_mail(from: &str, to: &str, message_id: &str, headers: &str, body: &str) -> String {
    format!(
        "From: {from}\r\nTo: {to}\r\nSubject: Re: transfer\r\nMessage-ID: <{message_id}>\r\n\
         {headers}MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_reaches_the_manager_once_replies_thread_and_a_crash_imports_each_mail_once()
-> anyhow::Result<()> {
    let stack = Stack::from_env().await?;
    let run = Uuid::new_v4().simple().to_string();
    let bank = "support@bank.test";
    let ivan = format!("ivan-{run}@client.test");
    let ivan_alt = format!("Ivan.Alt-{run}@client.test");
    let gone = format!("gone-{run}@client.test"); // has no mailbox: SMTP refuses it
    let mail = MailServer::start(&[bank, &ivan]).await?;
    let mut engine = mail_engine(&stack, &mail, bank, &[]).await?;
    let store = PgStore::connect(&engine.database_url).await?;
    let client_id = format!("email:{ivan}");
    let mut alice = Manager::connect(
        &engine.grpc,
        stack.token(Role::Manager, &format!("alice-{run}"), "Alice")?,
    )
    .await?;
    alice.set_ready().await?;

    // In: HTML-only UTF-8 mail with an attachment becomes one text message of email:<sender>.
    let m1 = format!("m1-{run}@client.test");
    mail.send(&ivan, bank, first_mail(&ivan, bank, &m1).as_bytes())
        .await?;
    let (ticket_id, bodies) = alice
        .wait_for_body(&client_id, "the first mail", |b| b.contains("Здравствуйте"))
        .await?;
    let first = bodies
        .iter()
        .find(|b| b.contains("Здравствуйте"))
        .context("first")?;
    assert!(first.contains("Мой перевод застрял."), "{first:?}");
    // The PDF is a file of the message (in the object store), not a line of its text.
    assert!(!first.contains("[attachment"), "{first:?}");
    let files = alice.files_of(&ticket_id).await?;
    assert_eq!(
        files
            .iter()
            .map(|f| (f.name.as_str(), f.content_type.as_str()))
            .collect::<Vec<_>>(),
        [("statement.pdf", "application/pdf")]
    );
    let (_, data) = alice.attachment(&files[0].id).await?;
    assert_eq!(data, b"%PDF-1.4\n");
    assert!(!first.contains('<'), "HTML is turned into text: {first:?}");

    // Out: the reply arrives as a mail threaded to the client's mail, the manager's file
    // attached to it.
    let form: &[u8] = b"%PDF-1.4\n1 0 obj << >> endobj\n%%EOF\n";
    alice
        .reply_with_file(
            &ticket_id,
            "Let me check",
            "r1",
            ("form.pdf", "application/pdf", form),
        )
        .await?;
    let reply = mail
        .wait_for_mail(&ivan, WAIT, |m| m.text().contains("Let me check"))
        .await?;
    let parsed = mail_parser::MessageParser::default()
        .parse(&reply.raw)
        .context("the reply parses")?;
    let attached: Vec<(String, Vec<u8>)> = parsed
        .attachments()
        .map(|a| {
            use mail_parser::MimeHeaders as _;
            (
                a.attachment_name().unwrap_or_default().to_owned(),
                a.contents().to_vec(),
            )
        })
        .collect();
    assert_eq!(attached, [("form.pdf".to_owned(), form.to_vec())]);
    let reply_id = reply.header("Message-ID").context("reply Message-ID")?;
    assert!(
        reply_id.starts_with(&format!("<ticket-{ticket_id}.")) && reply_id.ends_with("@bank.test>"),
        "{reply_id}"
    );
    assert_eq!(
        reply.header("In-Reply-To").as_deref(),
        Some(format!("<{m1}>").as_str())
    );
    assert!(
        reply
            .header("References")
            .unwrap_or_default()
            .contains(&format!("<{m1}>")),
        "{:?}",
        reply.header("References")
    );
    let short = &ticket_id.replace('-', "")[..8];
    let subject = reply.header("Subject").unwrap_or_default();
    // `[#<short ticket id>-<secret tag>]`: only the tagged reference threads (email_delivery.rs).
    let reference = subject
        .split("[#")
        .nth(1)
        .and_then(|r| r.split(']').next())
        .filter(|r| r.starts_with(&format!("{short}-")))
        .with_context(|| format!("no tagged ticket reference in {subject:?}"))?
        .to_owned();
    assert!(
        store
            .outbound_emails_of(&client_id)
            .await?
            .iter()
            .any(|id| format!("<{id}>") == reply_id),
        "the outbound Message-ID is stored"
    );

    // The client answers from another address of theirs, quoting our mail: it threads into the
    // open ticket of the same client, quote stripped.
    let m2 = format!("m2-{run}@client.test");
    let answer = plain_mail(
        &ivan_alt,
        bank,
        &m2,
        &format!("In-Reply-To: {reply_id}\r\nReferences: <{m1}> {reply_id}\r\n"),
        "It arrived, thank you!\r\n\r\nOn Mon, 3 Jun 2024 at 10:05, Bank <support@bank.test> wrote:\r\n> Let me check",
    );
    mail.send(&ivan_alt, bank, answer.as_bytes()).await?;
    let (same_ticket, bodies) = alice
        .wait_for_body(&client_id, "the threaded answer", |b| {
            b == "It arrived, thank you!"
        })
        .await?;
    assert_eq!(same_ticket, ticket_id);
    assert!(
        !bodies
            .iter()
            .any(|b| b.contains("Let me check") && b.contains("It arrived")),
        "{bodies:?}"
    );

    // Without threading headers, the ticket reference in the subject still finds the client.
    let phone = format!("ivan.phone-{run}@client.test");
    let by_subject = format!(
        "From: {phone}\r\nTo: {bank}\r\nSubject: Re: transfer [#{reference}]\r\n\
         Message-ID: <p-{run}@client.test>\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n\
         from my phone\r\n"
    );
    mail.send(&phone, bank, by_subject.as_bytes()).await?;
    let (same_ticket, _) = alice
        .wait_for_body(&client_id, "the mail naming the ticket", |b| {
            b == "from my phone"
        })
        .await?;
    assert_eq!(same_ticket, ticket_id);

    // Crash: communication dies, a mail arrives meanwhile, and the stored import position is
    // lost too (as if the crash hit between Kafka's ack and the position update). After the
    // restart every mail is fetched again, yet each reaches the manager exactly once.
    engine.kill_communication().await?;
    let m3 = format!("m3-{run}@client.test");
    mail.send(
        &ivan,
        bank,
        plain_mail(&ivan, bank, &m3, "", "third, sent while down").as_bytes(),
    )
    .await?;
    sqlx::query("UPDATE email_mailboxes SET last_uid = 0")
        .execute(store.pool())
        .await?;
    engine.start_communication().await?;
    // A reused Message-ID with other content is a new message, not a duplicate to drop.
    mail.send(
        &ivan,
        bank,
        plain_mail(&ivan, bank, &m1, "", "fourth, reusing the first Message-ID").as_bytes(),
    )
    .await?;
    let (_, bodies) = alice
        .wait_for_body(&client_id, "the fourth mail", |b| b.starts_with("fourth"))
        .await?;
    for prefix in [
        "Здравствуйте",
        "It arrived",
        "from my phone",
        "third",
        "fourth",
    ] {
        assert_eq!(
            bodies.iter().filter(|b| b.starts_with(prefix)).count(),
            1,
            "{prefix}: {bodies:?}"
        );
    }
    // Everything imported is marked seen (only after Kafka acknowledged it).
    let inbox = mail.mails(bank).await?;
    assert_eq!(inbox.len(), 5);
    eventually(WAIT, "every imported mail marked seen", || async {
        Ok(mail.mails(bank).await?.iter().all(|m| m.seen).then_some(()))
    })
    .await?;

    // A client whose address the mail server refuses: the mail to them (the assignment notice)
    // is a recorded failed delivery, not silently dropped.
    let gone_id = format!("email:{gone}");
    mail.send(
        &gone,
        bank,
        plain_mail(&gone, bank, &format!("g-{run}@client.test"), "", "hello?").as_bytes(),
    )
    .await?;
    // Ready for one more client.
    alice.set_ready().await?;
    alice
        .wait_for_body(&gone_id, "the mail of a client without mailbox", |b| {
            b == "hello?"
        })
        .await?;
    let failed = eventually(WAIT, &format!("a failed delivery to {gone_id}"), || async {
        let ledger = store.deliveries_of("email", &gone_id).await?;
        Ok(ledger.into_iter().find(|d| d.status == "failed"))
    })
    .await?;
    assert!(
        failed.detail.as_deref().unwrap_or_default().contains("550"),
        "{failed:?}"
    );
    // The replies to Ivan were each sent once.
    let ledger = store.deliveries_of("email", &client_id).await?;
    assert!(ledger.iter().all(|d| d.status == "sent"), "{ledger:?}");
    let to_ivan = mail.mails(&ivan).await?;
    assert_eq!(
        to_ivan
            .iter()
            .filter(|m| m.text().contains("Let me check"))
            .count(),
        1
    );
    Ok(())
}

/// The value of the series `name{label="value"}` on a Prometheus text page, if present.
fn metric(page: &str, name: &str, label: (&str, &str)) -> Option<f64> {
    let want = format!("{}=\"{}\"", label.0, label.1);
    page.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .find(|(head, _)| {
            head.split_once('{')
                .is_some_and(|(m, labels)| m == name && labels.contains(&want))
        })
        .and_then(|(_, v)| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn card_mail_is_quarantined_and_a_mail_over_the_limit_is_not_downloaded() -> anyhow::Result<()>
{
    const LIMIT: usize = 8192;
    const QUARANTINE: &str = "Quarantine";
    let stack = Stack::from_env().await?;
    let run = Uuid::new_v4().simple().to_string();
    let bank = "support@bank.test";
    let olga = format!("olga-{run}@client.test");
    let mail = MailServer::start(&[bank, &olga]).await?;
    let engine = mail_engine(
        &stack,
        &mail,
        bank,
        &[
            ("INBOX_IMAP_MAX_MAIL_BYTES", LIMIT.to_string()),
            // The default policy and folder, spelled out.
            ("INBOX_IMAP_CARD_MAIL", "quarantine".into()),
            ("INBOX_IMAP_QUARANTINE", QUARANTINE.into()),
        ],
    )
    .await?;
    let store = PgStore::connect(&engine.database_url).await?;
    let client_id = format!("email:{olga}");
    let mut alice = Manager::connect(
        &engine.grpc,
        stack.token(Role::Manager, &format!("alice-{run}"), "Alice")?,
    )
    .await?;
    alice.set_ready().await?;

    let normal = format!("n-{run}@client.test");
    let card = format!("c-{run}@client.test");
    let big = format!("b-{run}@client.test");
    mail.send(
        &olga,
        bank,
        plain_mail(&olga, bank, &normal, "", "my transfer is stuck").as_bytes(),
    )
    .await?;
    mail.send(
        &olga,
        bank,
        plain_mail(&olga, bank, &card, "", "my card is 4111 1111 1111 1111").as_bytes(),
    )
    .await?;
    // Four times the limit, in ordinary lines of text.
    let line = "BIGMAIL the statement you asked for, line after line of it\r\n";
    let filler = line.repeat(4 * LIMIT / line.len() + 1);
    assert!(filler.len() > 4 * LIMIT);
    mail.send(
        &olga,
        bank,
        plain_mail(&olga, bank, &big, "", &filler).as_bytes(),
    )
    .await?;

    // The normal mail is a message of the client's ticket, as always.
    alice
        .wait_for_message(&client_id, "my transfer is stuck")
        .await?;

    // The card mail and the big one end up in the quarantine folder; only the normal one stays.
    let quarantined = eventually(
        WAIT,
        "the card mail and the big mail quarantined",
        || async {
            let held = message_ids(&mail.mails_in(bank, QUARANTINE).await?);
            let both = [&card, &big]
                .iter()
                .all(|id| held.contains(&format!("<{id}>")));
            Ok(both.then_some(held))
        },
    )
    .await?;
    assert_eq!(quarantined.len(), 2, "each once: {quarantined:?}");
    let inbox = eventually(WAIT, "only the normal mail left in the inbox", || async {
        let inbox = mail.mails(bank).await?;
        Ok((inbox.len() == 1).then_some(inbox))
    })
    .await?;
    assert_eq!(message_ids(&inbox), vec![format!("<{normal}>")]);
    assert!(inbox.iter().all(|m| m.seen), "imported mail is marked seen");

    // The card mail was imported first: recorded as blocked, and the client got the warning.
    eventually(WAIT, "the card mail recorded as blocked", || async {
        let blocked: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM messages WHERE client_id = $1 AND author = 'client' \
             AND afc_status = 'blocked'",
        )
        .bind(&client_id)
        .fetch_one(store.pool())
        .await?;
        Ok((blocked == 1).then_some(()))
    })
    .await?;
    mail.wait_for_mail(&olga, WAIT, |m| {
        m.text().contains("blocked by our security check")
    })
    .await?;

    // The big mail never became a message: the client's messages are the other two, and nobody
    // ever saw a line of it.
    let bodies: Vec<String> = sqlx::query_scalar(
        "SELECT body FROM messages WHERE client_id = $1 AND author = 'client' ORDER BY created_at",
    )
    .bind(&client_id)
    .fetch_all(store.pool())
    .await?;
    assert_eq!(bodies.len(), 2, "{bodies:?}");
    assert!(!bodies.iter().any(|b| b.contains("BIGMAIL")), "{bodies:?}");
    let (_, seen) = alice
        .wait_for_message(&client_id, "my transfer is stuck")
        .await?;
    assert!(
        !seen
            .iter()
            .any(|b| b.contains("BIGMAIL") || b.contains("4111")),
        "{seen:?}"
    );

    // The operators see both, counted.
    let http = reqwest::Client::new();
    let url = format!("{}/metrics", engine.ops(Service::Communication));
    let page = http
        .get(&url)
        .send()
        .await?
        .error_for_status()?
        .text()
        .await?;
    assert_eq!(
        metric(&page, "inbox_email_skipped_total", ("reason", "too_large")),
        Some(1.0),
        "{page}"
    );
    assert_eq!(
        metric(
            &page,
            "inbox_email_card_mail_total",
            ("action", "quarantine")
        ),
        Some(1.0),
        "{page}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sender_over_their_rate_is_held_in_the_quarantine_and_others_still_get_through()
-> anyhow::Result<()> {
    let stack = Stack::from_env().await?;
    let run = Uuid::new_v4().simple().to_string();
    let bank = "support@bank.test";
    let (olga, petr) = (
        format!("olga-{run}@client.test"),
        format!("petr-{run}@client.test"),
    );
    let mail = MailServer::start(&[bank, &olga, &petr]).await?;
    // Two mails in a burst, then one per 100 s: none more within the test.
    let engine = imap_engine(
        &stack,
        &mail,
        bank,
        &[
            ("INBOX_RATE_LIMIT_BURST", "2".into()),
            ("INBOX_RATE_LIMIT_PER_SECOND", "0.01".into()),
        ],
    )
    .await?;
    let mut alice = Manager::connect(
        &engine.grpc,
        stack.token(Role::Manager, &format!("alice-{run}"), "Alice")?,
    )
    .await?;
    // One slot per client: Olga's ticket and Petr's.
    for _ in 0..2 {
        alice.set_ready().await?;
    }
    let ids: Vec<String> = (1..=4).map(|n| format!("o{n}-{run}@client.test")).collect();
    for (n, id) in ids.iter().enumerate() {
        let body = format!("olga's mail number {}", n + 1);
        mail.send(
            &olga,
            bank,
            plain_mail(&olga, bank, id, "", &body).as_bytes(),
        )
        .await?;
    }
    let other = format!("p-{run}@client.test");
    mail.send(
        &petr,
        bank,
        plain_mail(&petr, bank, &other, "", "petr writes once").as_bytes(),
    )
    .await?;

    // Petr's mail came last: once a manager sees it, all of Olga's were looked at.
    let olga_id = format!("email:{olga}");
    alice
        .wait_for_message(&format!("email:{petr}"), "petr writes once")
        .await?;
    let (_, seen) = alice
        .wait_for_all(&olga_id, &["olga's mail number 1", "olga's mail number 2"])
        .await?;
    assert!(
        !seen
            .iter()
            .any(|b| b.contains("number 3") || b.contains("number 4")),
        "{seen:?}"
    );
    // The two over the budget wait, unread, in the quarantine folder; nothing of them is stored.
    let held = eventually(WAIT, "the mails over the rate quarantined", || async {
        let held = message_ids(&mail.mails_in(bank, "Quarantine").await?);
        Ok((held.len() == 2).then_some(held))
    })
    .await?;
    assert_eq!(held, vec![format!("<{}>", ids[2]), format!("<{}>", ids[3])]);
    let store = PgStore::connect(&engine.database_url).await?;
    let stored: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM messages WHERE client_id = $1 AND author = 'client'",
    )
    .bind(&olga_id)
    .fetch_one(store.pool())
    .await?;
    assert_eq!(stored, 2);
    let page = reqwest::get(format!("{}/metrics", engine.ops(Service::Communication)))
        .await?
        .error_for_status()?
        .text()
        .await?;
    assert_eq!(
        metric(
            &page,
            "inbox_email_skipped_total",
            ("reason", "rate_limited")
        ),
        Some(2.0),
        "{page}"
    );
    Ok(())
}

/// The Message-IDs of `mails`, as written (`<...>`).
fn message_ids(mails: &[e2e::email::Mail]) -> Vec<String> {
    mails
        .iter()
        .filter_map(|m| m.header("Message-ID"))
        .collect()
}

/// A bank mailbox on `mail` imported by a fresh engine with `extra` settings; a normal mail and
/// one with a card number sent by a new client, the normal one seen by a manager. Returns the
/// engine and the Message-IDs (normal, card).
async fn card_mail_case(
    stack: &Stack,
    mail: &MailServer,
    bank: &str,
    client: &str,
    extra: &[(&str, String)],
) -> anyhow::Result<(Engine, String, String)> {
    let engine = imap_engine(stack, mail, bank, extra).await?;
    let mut alice = Manager::connect(
        &engine.grpc,
        stack.token(
            Role::Manager,
            &format!("alice-{}", Uuid::new_v4().simple()),
            "Alice",
        )?,
    )
    .await?;
    alice.set_ready().await?;
    let normal = format!("n-{}@client.test", Uuid::new_v4().simple());
    let card = format!("c-{}@client.test", Uuid::new_v4().simple());
    let body = "my card is 4111 1111 1111 1111";
    for (id, text) in [(&card, body), (&normal, "and the transfer?")] {
        mail.send(
            client,
            bank,
            plain_mail(client, bank, id, "", text).as_bytes(),
        )
        .await?;
    }
    // The normal mail comes after the card one: once it is seen, the card one was imported.
    alice
        .wait_for_message(&format!("email:{client}"), "and the transfer?")
        .await?;
    Ok((engine, format!("<{normal}>"), format!("<{card}>")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_server_without_move_card_mail_is_copied_to_the_quarantine_and_expunged()
-> anyhow::Result<()> {
    let stack = Stack::from_env().await?;
    let bank = "support@bank.test";
    let client = format!("petr-{}@client.test", Uuid::new_v4().simple());
    let mail = MailServer::start_without_move(&[bank, &client]).await?;
    let (_engine, normal, card) = card_mail_case(
        &stack,
        &mail,
        bank,
        &client,
        &[("INBOX_IMAP_QUARANTINE", "Held".into())],
    )
    .await?;
    let held = eventually(WAIT, "the card mail copied to the quarantine", || async {
        let held = message_ids(&mail.mails_in(bank, "Held").await?);
        Ok((!held.is_empty()).then_some(held))
    })
    .await?;
    assert_eq!(held, vec![card]);
    eventually(WAIT, "the card mail expunged from the inbox", || async {
        let inbox = message_ids(&mail.mails(bank).await?);
        Ok((inbox == [normal.clone()]).then_some(()))
    })
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_card_mail_expunge_a_card_mail_is_deleted_and_a_big_one_still_quarantined()
-> anyhow::Result<()> {
    let stack = Stack::from_env().await?;
    let bank = "support@bank.test";
    let client = format!("anna-{}@client.test", Uuid::new_v4().simple());
    let mail = MailServer::start(&[bank, &client]).await?;
    let (_engine, normal, _card) = card_mail_case(
        &stack,
        &mail,
        bank,
        &client,
        &[
            ("INBOX_IMAP_CARD_MAIL", "expunge".into()),
            ("INBOX_IMAP_MAX_MAIL_BYTES", "4096".into()),
        ],
    )
    .await?;
    let big = format!("b-{}@client.test", Uuid::new_v4().simple());
    let filler = format!("{}\r\n", "x".repeat(76)).repeat(100);
    mail.send(
        &client,
        bank,
        plain_mail(&client, bank, &big, "", &filler).as_bytes(),
    )
    .await?;
    eventually(WAIT, "the big mail quarantined", || async {
        let held = message_ids(&mail.mails_in(bank, "Quarantine").await?);
        Ok((held == [format!("<{big}>")]).then_some(()))
    })
    .await?;
    // Gone for good: in neither folder.
    let inbox = message_ids(&mail.mails(bank).await?);
    assert_eq!(inbox, vec![normal]);
    Ok(())
}

/// A mail from `from` of `domain`, `Date:` and all, in the form the tests sign.
fn client_mail(from: &str, to: &str, message_id: &str, headers: &str, body: &str) -> Vec<u8> {
    format!(
        "From: Ivan <{from}>\r\nTo: {to}\r\nSubject: my transfer\r\nMessage-ID: <{message_id}>\r\n\
         Date: Mon, 3 Jun 2024 10:00:00 +0000\r\n{headers}MIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n"
    )
    .into_bytes()
}

/// A client domain of its own for one test, publishing its DKIM key and `p=reject`.
fn signing_domain(dns: &DnsServer, run: &str) -> anyhow::Result<SigningDomain> {
    let domain = format!("c{run}.test");
    let signer = SigningDomain::new(&domain, "s1")?;
    signer.publish(dns);
    dns.txt(
        &format!("_dmarc.{domain}"),
        "v=DMARC1; p=reject; adkim=r; aspf=r",
    );
    Ok(signer)
}

/// The value of `inbox_email_auth_total{result}` on `engine`'s metrics page (0 when absent).
async fn auth_count(engine: &Engine, result: &str) -> anyhow::Result<f64> {
    let url = format!("{}/metrics", engine.ops(Service::Communication));
    let page = reqwest::get(&url).await?.error_for_status()?.text().await?;
    Ok(metric(&page, "inbox_email_auth_total", ("result", result)).unwrap_or(0.0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_mail_joins_its_clients_ticket_and_a_forged_one_is_kept_apart_as_unverified()
-> anyhow::Result<()> {
    let stack = Stack::from_env().await?;
    let run = Uuid::new_v4().simple().to_string();
    let bank = "support@bank.test";
    let dns = DnsServer::start().await?;
    let signer = signing_domain(&dns, &run)?;
    let ivan = format!("ivan@{}", signer.domain);
    let mail = MailServer::start(&[bank, &ivan]).await?;
    // The default policy (separate) is the one under test: not set here.
    let engine = mail_engine(
        &stack,
        &mail,
        bank,
        &[("INBOX_EMAIL_AUTH_DNS", dns.addr.to_string())],
    )
    .await?;
    let client_id = format!("email:{ivan}");
    let unverified_id = format!("email:unverified:{ivan}");
    let mut alice = Manager::connect(
        &engine.grpc,
        stack.token(Role::Manager, &format!("alice-{run}"), "Alice")?,
    )
    .await?;
    // One slot for Ivan's ticket, one for the forger's.
    alice.set_ready().await?;
    alice.set_ready().await?;

    let m1 = format!("m1-{run}@{}", signer.domain);
    let genuine = signer.sign(&client_mail(&ivan, bank, &m1, "", "signed and sealed"))?;
    mail.send(&ivan, bank, &genuine).await?;
    let (ticket, _) = alice
        .wait_for_message(&client_id, "signed and sealed")
        .await?;

    // The forger knows the thread (the first mail's Message-ID) and writes as Ivan: unsigned,
    // then signed with a key of their own under Ivan's domain and selector.
    let answer_to = format!("In-Reply-To: <{m1}>\r\nReferences: <{m1}>\r\n");
    let unsigned = client_mail(
        &ivan,
        bank,
        &format!("f1-{run}@evil.test"),
        &answer_to,
        "FORGED please wire my savings to this new account",
    );
    mail.send(&ivan, bank, &unsigned).await?;
    let other_key = SigningDomain::new(&signer.domain, &signer.selector)?;
    let wrong_key = other_key.sign(&client_mail(
        &ivan,
        bank,
        &format!("f2-{run}@evil.test"),
        &answer_to,
        "FORGED and signed by another key",
    ))?;
    mail.send(&ivan, bank, &wrong_key).await?;
    // Ivan again, after both: once it is in his ticket, the forged mails were imported.
    let m2 = format!("m2-{run}@{}", signer.domain);
    let later = signer.sign(&client_mail(&ivan, bank, &m2, &answer_to, "still me"))?;
    mail.send(&ivan, bank, &later).await?;
    let (same, bodies) = alice.wait_for_message(&client_id, "still me").await?;
    assert_eq!(same, ticket, "a signed mail joins the client's ticket");
    assert!(
        !bodies.iter().any(|b| b.starts_with("FORGED")),
        "no forged mail in the victim's ticket: {bodies:?}"
    );

    // The forged mails: a client and a ticket of their own, both of them there, the name marked.
    let (forged_ticket, forged) = alice
        .wait_for_all(
            &unverified_id,
            &[
                "FORGED please wire my savings to this new account",
                "FORGED and signed by another key",
            ],
        )
        .await?;
    assert_ne!(forged_ticket, ticket);
    assert_eq!(forged.len(), 2, "{forged:?}");
    let tickets = alice.tickets(Vec::new()).await?;
    let named = |id: &str| {
        tickets
            .iter()
            .find(|t| t.id == id)
            .map(|t| t.client_name.clone())
            .unwrap_or_default()
    };
    assert_eq!(named(&forged_ticket), "Ivan (unverified sender)");
    assert_eq!(named(&ticket), "Ivan");

    // Counted: two authenticated, two that failed DMARC.
    eventually(WAIT, "the sender checks counted", || async {
        let counts = (
            auth_count(&engine, "pass").await?,
            auth_count(&engine, "fail").await?,
        );
        Ok((counts == (2.0, 2.0)).then_some(()))
    })
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_quarantine_a_forged_mail_is_not_imported_and_spf_counts_from_the_banks_mx()
-> anyhow::Result<()> {
    const MX: &str = "mx.bank.test";
    let stack = Stack::from_env().await?;
    let run = Uuid::new_v4().simple().to_string();
    let bank = "support@bank.test";
    let dns = DnsServer::start().await?;
    let signer = signing_domain(&dns, &run)?;
    // Only this host may send the domain's mail (SPF); the MX records who connected.
    dns.txt(&signer.domain, "v=spf1 ip4:192.0.2.10 -all");
    let ivan = format!("ivan@{}", signer.domain);
    let mail = MailServer::start(&[bank, &ivan]).await?;
    let engine = imap_engine(
        &stack,
        &mail,
        bank,
        &[
            ("INBOX_EMAIL_AUTH_POLICY", "quarantine".into()),
            ("INBOX_EMAIL_AUTH_TRUSTED_RECEIVED_BY", MX.into()),
            ("INBOX_EMAIL_AUTH_DNS", dns.addr.to_string()),
        ],
    )
    .await?;
    let store = PgStore::connect(&engine.database_url).await?;
    let client_id = format!("email:{ivan}");
    let mut alice = Manager::connect(
        &engine.grpc,
        stack.token(Role::Manager, &format!("alice-{run}"), "Alice")?,
    )
    .await?;
    alice.set_ready().await?;
    // What the bank's mail servers write on top of a mail their MX took from `ip`: the MX its
    // `Received:`, the final delivery the envelope sender as `Return-Path:` (the test's SMTP
    // peer writes neither, so the test does).
    let received = |ip: &str| {
        format!(
            "Return-Path: <{ivan}>\r\n\
             Received: from mail.{d} (mail.{d} [{ip}])\r\n\tby {MX} with ESMTP id {run}; \
             Mon, 3 Jun 2024 10:00:01 +0000\r\n",
            d = signer.domain
        )
        .into_bytes()
    };

    let forged_id = format!("<f-{run}@evil.test>");
    let forged_spf = format!("<fs-{run}@evil.test>");
    // Unsigned, from anywhere: DMARC fails.
    mail.send(
        &ivan,
        bank,
        &client_mail(
            &ivan,
            bank,
            &forged_id[1..forged_id.len() - 1],
            "",
            "FORGED one",
        ),
    )
    .await?;
    // Unsigned, from a host SPF does not allow: DMARC fails.
    let mut from_elsewhere = received("203.0.113.5");
    from_elsewhere.extend(client_mail(
        &ivan,
        bank,
        &forged_spf[1..forged_spf.len() - 1],
        "",
        "FORGED two",
    ));
    mail.send(&ivan, bank, &from_elsewhere).await?;
    // Unsigned, from the domain's own host: SPF passes, aligned, DMARC passes.
    let mut by_spf = received("192.0.2.10");
    by_spf.extend(client_mail(
        &ivan,
        bank,
        &format!("s-{run}@{}", signer.domain),
        "",
        "passed by SPF",
    ));
    mail.send(&ivan, bank, &by_spf).await?;
    // Signed: DKIM passes.
    let signed = signer.sign(&client_mail(
        &ivan,
        bank,
        &format!("d-{run}@{}", signer.domain),
        "",
        "passed by DKIM",
    ))?;
    mail.send(&ivan, bank, &signed).await?;

    alice
        .wait_for_all(&client_id, &["passed by SPF", "passed by DKIM"])
        .await?;
    let held = eventually(
        WAIT,
        "both forged mails in the quarantine folder",
        || async {
            let held = message_ids(&mail.mails_in(bank, "Quarantine").await?);
            let both = [&forged_id, &forged_spf].iter().all(|id| held.contains(id));
            Ok(both.then_some(held))
        },
    )
    .await?;
    assert_eq!(held.len(), 2, "{held:?}");
    let quarantined = mail.mails_in(bank, "Quarantine").await?;
    assert!(
        quarantined.iter().all(|m| !m.seen),
        "left unread for the bank's review"
    );
    let inbox = message_ids(&mail.mails(bank).await?);
    assert!(
        !inbox.contains(&forged_id) && !inbox.contains(&forged_spf),
        "{inbox:?}"
    );
    // Never imported: no message anywhere holds their text.
    let forged: i64 = sqlx::query_scalar("SELECT count(*) FROM messages WHERE body LIKE 'FORGED%'")
        .fetch_one(store.pool())
        .await?;
    assert_eq!(forged, 0);
    assert_eq!(auth_count(&engine, "fail").await?, 2.0);
    assert_eq!(auth_count(&engine, "pass").await?, 2.0);
    Ok(())
}
