//! Email end to end: the three services against Dovecot (IMAP) and an SMTP server that delivers
//! into Dovecot. A client's mail (HTML only, UTF-8, an attachment) reaches the manager once; the
//! manager's reply arrives as a mail threaded to it; the client's answer from another address
//! threads back into the open ticket, and so does one that only names the ticket in its subject;
//! a crash of `communication` (with the import position lost)
//! imports every mail exactly once; an undeliverable reply is a recorded failed delivery.

use std::time::Duration;

use anyhow::Context;
use e2e::email::{MailServer, PASSWORD};
use e2e::manager::Manager;
use e2e::{Engine, Stack, eventually};
use tickets::{PgStore, Role};
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(60);

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
    let mut engine = Engine::start_with(
        &stack,
        &[
            ("INBOX_IMAP_ADDR", mail.imap_addr.clone()),
            ("INBOX_IMAP_USER", bank.into()),
            ("INBOX_IMAP_PASSWORD", PASSWORD.into()),
            ("INBOX_SMTP_ADDR", mail.smtp_addr.clone()),
            ("INBOX_MAIL_FROM", bank.into()),
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
    assert!(
        first.contains("[attachment: statement.pdf (application/pdf, 9 bytes)]"),
        "{first:?}"
    );
    assert!(!first.contains('<'), "HTML is turned into text: {first:?}");

    // Out: the reply arrives as a mail threaded to the client's mail.
    alice.reply(&ticket_id, "Let me check", "r1").await?;
    let reply = mail
        .wait_for_mail(&ivan, WAIT, |m| m.text().contains("Let me check"))
        .await?;
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
