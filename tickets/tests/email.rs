//! The email channel's store: import positions per mailbox and the Message-ID registry that
//! threads mail to clients (`#[sqlx::test]` gives each test its own migrated database).

use sqlx::PgPool;
use tickets::{MailDirection, MailRecord, MailboxPosition, PgStore};

fn record(message_id: &str, client_id: &str, direction: MailDirection) -> MailRecord {
    MailRecord {
        message_id: message_id.into(),
        client_id: client_id.into(),
        direction,
        external_id: None,
        ticket_id: None,
        event_seq: None,
        subject: format!("subject of {message_id}"),
        references: vec!["older@x".into()],
    }
}

#[sqlx::test(migrator = "tickets::store::MIGRATOR")]
async fn a_mailbox_position_only_moves_forward_and_restarts_with_a_new_uidvalidity(
    pool: PgPool,
) -> anyhow::Result<()> {
    let store = PgStore::from_pool(pool);
    assert_eq!(store.email_mailbox("m").await?, None);
    store.reset_email_mailbox("m", 7).await?;
    store.advance_email_mailbox("m", 7, 5).await?;
    store.advance_email_mailbox("m", 7, 3).await?;
    // A position of the old UIDVALIDITY never lands on the new one.
    store.advance_email_mailbox("m", 6, 9).await?;
    let at = |uid_validity, last_uid| MailboxPosition {
        uid_validity,
        last_uid,
    };
    assert_eq!(store.email_mailbox("m").await?, Some(at(7, 5)));
    store.reset_email_mailbox("m", 8).await?;
    assert_eq!(store.email_mailbox("m").await?, Some(at(8, 0)));
    Ok(())
}

#[sqlx::test(migrator = "tickets::store::MIGRATOR")]
async fn a_thread_belongs_to_the_client_of_its_most_specific_known_message_id(
    pool: PgPool,
) -> anyhow::Result<()> {
    let store = PgStore::from_pool(pool);
    store
        .record_email(&record("in1@client", "email:a@x", MailDirection::In))
        .await?;
    store
        .record_email(&record("out1@bank", "email:b@x", MailDirection::Out))
        .await?;
    // Recording again is harmless.
    store
        .record_email(&record("in1@client", "email:a@x", MailDirection::In))
        .await?;
    let ids = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    assert_eq!(
        store
            .email_thread_client(&ids(&["unknown@x", "out1@bank", "in1@client"]))
            .await?
            .as_deref(),
        Some("email:b@x")
    );
    assert_eq!(
        store
            .email_thread_client(&ids(&["in1@client", "out1@bank"]))
            .await?
            .as_deref(),
        Some("email:a@x")
    );
    assert_eq!(store.email_thread_client(&ids(&["nope@x"])).await?, None);
    let last = store.last_inbound_email("email:a@x").await?;
    assert_eq!(
        last.map(|l| (l.message_id, l.references)),
        Some(("in1@client".into(), vec!["older@x".to_owned()]))
    );
    assert_eq!(store.outbound_emails_of("email:b@x").await?, ["out1@bank"]);
    Ok(())
}
