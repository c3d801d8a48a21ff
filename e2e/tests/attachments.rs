//! Attachments end to end over the real services (web chat, gRPC `ManagerService` and
//! `ClientService`, the object store): a client's photo reaches the manager of the ticket and no
//! other; a text file with a card number blocks its message, no manager can ever fetch it and its
//! object leaves the store; a manager's PDF reaches the client; refused files get clear errors.

use std::time::Duration;

use e2e::manager::Manager;
use e2e::{Engine, Stack, authed, webchat};
use proto::v1;
use proto::v1::client_service_client::ClientServiceClient;
use serde_json::{Value, json};
use tickets::Role;
use tonic::Code;
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(30);
/// A 1x1 PNG.
const PNG: &[u8] = &[
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52,
    0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1f, 0x15, 0xc4,
    0x89, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9c, 0x63, 0xf8, 0xcf, 0xc0, 0xf0,
    0x1f, 0x00, 0x05, 0x00, 0x01, 0xff, 0x89, 0x99, 0x3d, 0x1d, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45,
    0x4e, 0x44, 0xae, 0x42, 0x60, 0x82,
];
const PDF: &[u8] =
    b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n";

/// Uploads a file as the client of `token`: the status and the JSON answer.
async fn upload(
    http: &reqwest::Client,
    engine: &Engine,
    token: &str,
    name: &str,
    content_type: &str,
    data: &[u8],
) -> anyhow::Result<(u16, Value)> {
    let part = reqwest::multipart::Part::bytes(data.to_vec())
        .file_name(name.to_owned())
        .mime_str(content_type)?;
    let resp = http
        .post(format!("{}/v1/attachments", engine.http))
        .bearer_auth(token)
        .multipart(reqwest::multipart::Form::new().part("file", part))
        .send()
        .await?;
    let status = resp.status().as_u16();
    Ok((status, resp.json().await.unwrap_or(Value::Null)))
}

/// Sends `body` with the uploads `files` as a web-chat message.
async fn send(
    http: &reqwest::Client,
    engine: &Engine,
    token: &str,
    body: &str,
    files: &[&Value],
) -> anyhow::Result<u16> {
    let ids: Vec<&Value> = files.iter().map(|f| &f["id"]).collect();
    let resp = http
        .post(format!("{}/v1/messages", engine.http))
        .bearer_auth(token)
        .json(&json!({"body": body, "client_message_id": Uuid::new_v4(), "attachments": ids}))
        .send()
        .await?;
    Ok(resp.status().as_u16())
}

fn id_of(file: &Value) -> String {
    file["id"].as_str().unwrap_or_default().to_owned()
}

async fn manager_fetch(m: &Manager, id: &str) -> Result<v1::GetAttachmentResponse, tonic::Status> {
    Ok(m.client
        .clone()
        .get_attachment(m.req(v1::GetAttachmentRequest {
            attachment_id: id.into(),
        }))
        .await?
        .into_inner())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_go_both_ways_and_a_blocked_one_never_reaches_a_manager() -> anyhow::Result<()> {
    let stack = Stack::from_env().await?;
    let engine =
        Engine::start_with(&stack, &[("INBOX_ATTACHMENT_MAX_BYTES", "100000".into())]).await?;
    let run = Uuid::new_v4().simple().to_string();
    let subject = format!("ivan-{run}");
    let client_id = e2e::web_client(&subject);
    let client = stack.token(Role::Client, &subject, "Ivan")?;
    let http = reqwest::Client::new();
    let mut ws = webchat::connect(&engine, &client).await?;
    let mut alice = Manager::connect(
        &engine.grpc,
        stack.token(Role::Manager, &format!("alice-{run}"), "Alice")?,
    )
    .await?;
    let bob = Manager::connect(
        &engine.grpc,
        stack.token(Role::Manager, &format!("bob-{run}"), "Bob")?,
    )
    .await?;
    alice.set_ready().await?;

    // A photo with a caption: Alice's ticket shows it and she fetches its bytes; Bob cannot.
    let (status, photo) = upload(&http, &engine, &client, "receipt.png", "image/png", PNG).await?;
    assert_eq!(status, 201, "{photo}");
    assert_eq!(
        (&photo["content_type"], &photo["size"]),
        (&json!("image/png"), &json!(PNG.len()))
    );
    assert_eq!(
        send(&http, &engine, &client, "my receipt", &[&photo]).await?,
        202
    );
    let (ticket_id, _) = alice.wait_for_message(&client_id, "my receipt").await?;
    let shown = alice.messages(&ticket_id).await?;
    let with_photo = shown.iter().find(|m| m.body == "my receipt");
    assert_eq!(
        with_photo.map(|m| m
            .attachments
            .iter()
            .map(|a| a.id.clone())
            .collect::<Vec<_>>()),
        Some(vec![id_of(&photo)])
    );
    let fetched = manager_fetch(&alice, &id_of(&photo)).await?;
    assert_eq!(fetched.data, PNG);
    let denied = manager_fetch(&bob, &id_of(&photo)).await;
    assert_eq!(denied.err().map(|s| s.code()), Some(Code::NotFound));

    // A text file with a card number: blocked with its message; nobody fetches it, its object
    // leaves the store.
    let card = b"card 4111 1111 1111 1111 exp 12/29";
    let (status, leaked) =
        upload(&http, &engine, &client, "details.txt", "text/plain", card).await?;
    assert_eq!(status, 201, "{leaked}");
    let before = engine.stored_objects()?.len();
    assert_eq!(
        send(&http, &engine, &client, "see file", &[&leaked]).await?,
        202
    );
    webchat::next_of(&mut ws, "message_blocked", WAIT).await?;
    let denied = manager_fetch(&alice, &id_of(&leaked)).await;
    assert_eq!(denied.err().map(|s| s.code()), Some(Code::NotFound));
    for m in alice.messages(&ticket_id).await? {
        assert!(m.body != "see file" && m.attachments.iter().all(|a| a.id != id_of(&leaked)));
    }
    let mine = http
        .get(format!("{}/v1/attachments/{}", engine.http, id_of(&leaked)))
        .bearer_auth(&client)
        .send()
        .await?;
    assert_eq!(
        mine.status(),
        404,
        "the client's blocked file is gone for them too"
    );
    testkit::eventually(WAIT, "the blocked file's object is deleted", || async {
        Ok((engine.stored_objects()?.len() < before).then_some(()))
    })
    .await?;

    // Alice replies with a PDF and no text: the client gets it live and downloads it.
    let form = alice
        .client
        .clone()
        .upload_attachment(alice.req(v1::UploadAttachmentRequest {
            ticket_id: ticket_id.clone(),
            name: "form.pdf".into(),
            content_type: "application/pdf".into(),
            data: PDF.to_vec(),
        }))
        .await?
        .into_inner()
        .attachment
        .unwrap_or_default();
    let elsewhere = bob
        .client
        .clone()
        .upload_attachment(bob.req(v1::UploadAttachmentRequest {
            ticket_id: ticket_id.clone(),
            name: "x.pdf".into(),
            content_type: "application/pdf".into(),
            data: PDF.to_vec(),
        }))
        .await;
    assert_eq!(elsewhere.err().map(|s| s.code()), Some(Code::NotFound));
    alice
        .client
        .clone()
        .send_reply(alice.req(v1::SendReplyRequest {
            ticket_id: ticket_id.clone(),
            body: String::new(),
            idempotency_key: "form".into(),
            attachment_ids: vec![form.id.clone()],
        }))
        .await?;
    let reply = webchat::next_of(&mut ws, "manager_reply", WAIT).await?;
    assert_eq!(reply["attachments"][0]["name"], "form.pdf");
    let got = http
        .get(format!("{}/v1/attachments/{}", engine.http, form.id))
        .bearer_auth(&client)
        .send()
        .await?;
    assert_eq!(got.status(), 200);
    let header = |h: &str| {
        got.headers()
            .get(h)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    assert_eq!(header("content-type"), "application/pdf");
    assert!(header("content-disposition").starts_with("attachment;"));
    assert_eq!(header("x-content-type-options"), "nosniff");
    assert_eq!(got.bytes().await?.as_ref(), PDF);
    let stranger = stack.token(Role::Client, &format!("eve-{run}"), "Eve")?;
    let theirs = http
        .get(format!("{}/v1/attachments/{}", engine.http, form.id))
        .bearer_auth(&stranger)
        .send()
        .await?;
    assert_eq!(theirs.status(), 404, "rule 2: another client's file");
    let history: Value = http
        .get(format!("{}/v1/messages", engine.http))
        .bearer_auth(&client)
        .send()
        .await?
        .json()
        .await?;
    let files: Vec<&Value> = history["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|m| m["attachments"].as_array().into_iter().flatten())
        .collect();
    assert_eq!(
        files.iter().map(|f| f["name"].clone()).collect::<Vec<_>>(),
        [json!("receipt.png"), json!("form.pdf")],
        "the chat lists the photo and the form, not the blocked file"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_files_get_clear_errors_on_both_client_apis() -> anyhow::Result<()> {
    let stack = Stack::from_env().await?;
    let engine =
        Engine::start_with(&stack, &[("INBOX_ATTACHMENT_MAX_BYTES", "100000".into())]).await?;
    let run = Uuid::new_v4().simple().to_string();
    let client = stack.token(Role::Client, &format!("olga-{run}"), "Olga")?;
    let http = reqwest::Client::new();

    // A text posing as a PNG, a type not accepted, a file over the limit, one far over it.
    let (status, body) = upload(&http, &engine, &client, "a.png", "image/png", b"hello").await?;
    assert_eq!(status, 422, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("image/png")
    );
    let (status, body) =
        upload(&http, &engine, &client, "a.html", "text/html", b"<b>hi</b>").await?;
    assert_eq!(status, 422, "{body}");
    let (status, body) = upload(
        &http,
        &engine,
        &client,
        "big.txt",
        "text/plain",
        &[b'a'; 150_000],
    )
    .await?;
    assert_eq!(status, 413, "{body}");
    let (status, body) = upload(
        &http,
        &engine,
        &client,
        "huge.txt",
        "text/plain",
        &[b'a'; 400_000],
    )
    .await?;
    assert_eq!(status, 413, "{body}");
    assert!(body["error"]["message"].is_string(), "a JSON error: {body}");
    // A message naming a file that is not the client's upload.
    let bogus = json!({"id": Uuid::new_v4()});
    assert_eq!(send(&http, &engine, &client, "x", &[&bogus]).await?, 422);

    // gRPC `ClientService`: the same core, the same answers.
    let channel = tonic::transport::Channel::from_shared(engine.grpc.clone())?
        .connect()
        .await?;
    let mut grpc = ClientServiceClient::new(channel);
    let refused = grpc
        .upload_attachment(authed(
            &client,
            v1::ClientUploadAttachmentRequest {
                name: "a.png".into(),
                content_type: "image/png".into(),
                data: b"hello".to_vec(),
            },
        ))
        .await;
    assert_eq!(refused.err().map(|s| s.code()), Some(Code::InvalidArgument));
    let photo = grpc
        .upload_attachment(authed(
            &client,
            v1::ClientUploadAttachmentRequest {
                name: "p.png".into(),
                content_type: String::new(),
                data: PNG.to_vec(),
            },
        ))
        .await?
        .into_inner()
        .attachment
        .unwrap_or_default();
    assert_eq!(photo.content_type, "image/png", "taken from the content");
    let back = grpc
        .get_attachment(authed(
            &client,
            v1::GetAttachmentRequest {
                attachment_id: photo.id.clone(),
            },
        ))
        .await?
        .into_inner();
    assert_eq!(back.data, PNG);
    grpc.send_message(authed(
        &client,
        v1::SendMessageRequest {
            body: String::new(),
            idempotency_key: Uuid::new_v4().to_string(),
            attachment_ids: vec![photo.id.clone()],
        },
    ))
    .await?;
    Ok(())
}
