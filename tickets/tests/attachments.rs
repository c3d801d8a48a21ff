//! Attachments in the store against a real PostgreSQL: who may put a file on a message, who may
//! fetch it (banking rules 1 and 2 through the message that carries it), and what a blocked
//! message leaves of its files.

use sqlx::PgPool;
use testkit::fixtures::{CardCheck, manager, web_message};
use tickets::attachments::{NewAttachment, Reader, Uploader};
use tickets::{AttachmentRef, NewClientMessage, PgStore, StoreError};
use uuid::Uuid;

/// Records an upload (its object is not needed here: the store keeps only the reference).
async fn upload(
    store: &PgStore,
    by: Uploader<'_>,
    name: &str,
    content_type: &str,
    text: Option<&str>,
) -> anyhow::Result<AttachmentRef> {
    let id = Uuid::new_v4();
    let key = format!("attachments/test/{id}");
    Ok(store
        .add_attachment(
            by,
            &NewAttachment {
                id,
                object_key: &key,
                name,
                content_type,
                size: 3,
                sha256: "00",
                text,
            },
        )
        .await?)
}

/// A message of `client` carrying `files`, stored and checked as the inbound consumer does.
async fn send(
    store: &PgStore,
    client: &str,
    body: &str,
    files: &[AttachmentRef],
) -> anyhow::Result<NewClientMessage> {
    let mut m = web_message(client, body);
    m.attachments = files.to_vec();
    store
        .intake_batch(std::slice::from_ref(&m), &[], Some(&CardCheck::new()?))
        .await?;
    Ok(m)
}

async fn fetchable(store: &PgStore, reader: Reader<'_>, id: Uuid) -> anyhow::Result<bool> {
    Ok(store.fetchable_attachment(reader, id).await?.is_some())
}

#[sqlx::test(migrator = "tickets::store::MIGRATOR")]
async fn a_clients_file_reaches_only_the_manager_of_the_ticket_once_its_message_passed(
    pool: PgPool,
) -> anyhow::Result<()> {
    let store = PgStore::from_pool(pool);
    let photo = upload(
        &store,
        Uploader::Client("ana"),
        "receipt.png",
        "image/png",
        None,
    )
    .await?;
    // Before any message carries it: only its uploader sees it.
    assert!(fetchable(&store, Reader::Client("ana"), photo.id).await?);
    assert!(!fetchable(&store, Reader::Client("bo"), photo.id).await?);
    assert!(!fetchable(&store, Reader::Manager("alice"), photo.id).await?);

    // No manager is ready: the message passed but its ticket is nobody's yet.
    let m = send(&store, "ana", "my receipt", std::slice::from_ref(&photo)).await?;
    assert!(!fetchable(&store, Reader::Manager("alice"), photo.id).await?);
    assert!(fetchable(&store, Reader::Supervisor, photo.id).await?);

    // Alice says she is ready and takes the waiting ticket; Bob comes after.
    store.set_ready(&manager("alice"), 3).await?;
    store.set_ready(&manager("bob"), 3).await?;
    let (holder, other) = ("alice", "bob");
    assert!(fetchable(&store, Reader::Manager(holder), photo.id).await?);
    assert!(
        !fetchable(&store, Reader::Manager(other), photo.id).await?,
        "rule 2: not the other manager's ticket"
    );
    assert!(fetchable(&store, Reader::Client("ana"), photo.id).await?);
    assert!(!fetchable(&store, Reader::Client("bo"), photo.id).await?);

    // The message lists it, for the manager and in the client's chat.
    let ticket = store.manager_tickets(holder, &[]).await?.remove(0);
    let read = store.manager_messages(holder, ticket.id).await?;
    let shown = read.iter().find(|x| x.id == m.id).map(|x| &x.attachments);
    assert_eq!(shown, Some(&vec![photo.clone()]));
    let chat = store.client_history("ana", None, 50).await?;
    let mine = chat.messages.iter().find(|x| x.id == m.id);
    assert_eq!(mine.map(|x| &x.attachments), Some(&vec![photo.clone()]));

    // A second message cannot take the same file again, nor another client's upload.
    let again = send(&store, "ana", "again", std::slice::from_ref(&photo)).await?;
    let bos = upload(&store, Uploader::Client("bo"), "b.png", "image/png", None).await?;
    let foreign = send(&store, "ana", "not mine", std::slice::from_ref(&bos)).await?;
    let chat = store.client_history("ana", None, 50).await?;
    for id in [again.id, foreign.id] {
        let x = chat.messages.iter().find(|x| x.id == id);
        assert_eq!(x.map(|x| x.attachments.len()), Some(0));
    }
    assert!(!fetchable(&store, Reader::Client("ana"), bos.id).await?);
    assert!(
        store
            .unsent_attachments(Uploader::Client("ana"), &[photo.id, bos.id])
            .await?
            .is_empty()
    );
    Ok(())
}

#[sqlx::test(migrator = "tickets::store::MIGRATOR")]
async fn a_card_number_in_a_text_file_or_a_file_name_blocks_the_message_and_its_files(
    pool: PgPool,
) -> anyhow::Result<()> {
    let store = PgStore::from_pool(pool.clone());
    store.set_ready(&manager("alice"), 3).await?;
    send(&store, "ana", "hello", &[]).await?;
    let text = upload(
        &store,
        Uploader::Client("ana"),
        "details.txt",
        "text/plain",
        Some("my card: 4111 1111 1111 1111, exp 12/29"),
    )
    .await?;
    let named = upload(
        &store,
        Uploader::Client("ana"),
        "4111111111111111.pdf",
        "application/pdf",
        None,
    )
    .await?;
    let first = send(&store, "ana", "see the file", std::slice::from_ref(&text)).await?;
    let second = send(&store, "ana", "", std::slice::from_ref(&named)).await?;

    let ticket = store.manager_tickets("alice", &[]).await?.remove(0);
    let read = store.manager_messages("alice", ticket.id).await?;
    assert!(
        read.iter().all(|m| m.id != first.id && m.id != second.id),
        "rule 1: a blocked message is never shown"
    );
    for file in [&text, &named] {
        for reader in [
            Reader::Manager("alice"),
            Reader::Supervisor,
            Reader::Client("ana"),
        ] {
            assert!(!fetchable(&store, reader, file.id).await?, "{reader:?}");
        }
    }
    // At rest: no text of the file, no digits in its name; both objects listed for deletion.
    let kept: Vec<(String, Option<String>)> =
        sqlx::query_as("SELECT file_name, text_content FROM attachments ORDER BY file_name")
            .fetch_all(&pool)
            .await?;
    assert!(
        kept.iter()
            .all(|(name, text)| !name.contains("4111") && text.is_none()),
        "{kept:?}"
    );
    let purge: Vec<Uuid> = store
        .blocked_attachments_to_purge(10)
        .await?
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert_eq!(purge.len(), 2);
    store.mark_attachments_purged(&purge).await?;
    assert!(store.blocked_attachments_to_purge(10).await?.is_empty());
    // The client's events of the blocked messages carry no file names either.
    let events = store.client_events_after("ana", 0, 100).await?;
    assert!(
        events
            .iter()
            .all(|e| !e.payload.to_string().contains("4111")),
        "{events:?}"
    );
    Ok(())
}

#[sqlx::test(migrator = "tickets::store::MIGRATOR")]
async fn a_manager_sends_only_their_own_uploads_for_the_ticket_and_the_client_fetches_them(
    pool: PgPool,
) -> anyhow::Result<()> {
    let store = PgStore::from_pool(pool);
    store.set_ready(&manager("alice"), 3).await?;
    send(&store, "ana", "hello", &[]).await?;
    let ticket = store.manager_tickets("alice", &[]).await?.remove(0);
    let by = Uploader::Manager {
        manager_id: "alice",
        ticket_id: ticket.id,
    };
    let form = upload(&store, by, "form.pdf", "application/pdf", None).await?;
    let elsewhere = upload(
        &store,
        Uploader::Manager {
            manager_id: "alice",
            ticket_id: Uuid::new_v4(),
        },
        "other.pdf",
        "application/pdf",
        None,
    )
    .await?;
    // Another ticket's upload refuses the whole reply.
    let refused = store
        .send_reply_with_files(&manager("alice"), ticket.id, "r0", "", &[elsewhere.id])
        .await;
    assert!(matches!(refused, Err(StoreError::AttachmentNotFound)));
    assert!(!fetchable(&store, Reader::Client("ana"), form.id).await?);

    let reply = store
        .send_reply_with_files(&manager("alice"), ticket.id, "r1", "the form", &[form.id])
        .await?;
    let retry = store
        .send_reply_with_files(&manager("alice"), ticket.id, "r1", "the form", &[form.id])
        .await?;
    assert_eq!(reply, retry, "a retry is the same reply");
    assert!(fetchable(&store, Reader::Client("ana"), form.id).await?);
    assert!(!fetchable(&store, Reader::Client("bo"), form.id).await?);
    let chat = store.client_history("ana", None, 50).await?;
    let got = chat.messages.iter().find(|m| m.id == reply);
    assert_eq!(got.map(|m| &m.attachments), Some(&vec![form.clone()]));
    let events = store.client_events_after("ana", 0, 100).await?;
    let reply_event = events.iter().find(|e| e.kind == "manager_reply");
    assert_eq!(
        reply_event.map(|e| e.payload["attachments"][0]["name"].clone()),
        Some(serde_json::json!("form.pdf"))
    );
    Ok(())
}
