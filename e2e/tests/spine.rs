//! The spine, end to end on the real stack: a client message goes through HTTP, Kafka, the Temporal
//! ticket workflow and PostgreSQL to a ready manager, and everything comes back on the WebSocket.

use std::time::Duration;

use anyhow::{Context, bail};
use e2e::manager::Manager;
use e2e::{Engine, Stack};
use futures::StreamExt;
use proto::v1;
use serde_json::{Value, json};
use tickets::Role;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tonic::Code;
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(60);

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A client's event stream; checks that event ids only grow.
struct Events {
    ws: Ws,
    last_id: i64,
    seen: Vec<Value>,
}

impl Events {
    async fn connect(http: &str, token: &str) -> anyhow::Result<Self> {
        let url = format!(
            "ws://{}/v1/ws?token={token}",
            http.trim_start_matches("http://")
        );
        let (ws, _) = tokio_tungstenite::connect_async(url).await?;
        Ok(Self {
            ws,
            last_id: 0,
            seen: Vec::new(),
        })
    }

    /// The next event of type `kind`, failing after `WAIT`; events passed over stay in `seen`.
    async fn next_of(&mut self, kind: &str) -> anyhow::Result<Value> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let frame = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .with_context(|| format!("no {kind} event within {WAIT:?}; saw {:?}", self.seen))?
                .context("websocket closed")??;
            let WsMessage::Text(text) = frame else {
                continue;
            };
            let event: Value = serde_json::from_str(&text)?;
            let id = event["event_id"]
                .as_i64()
                .context("event without event_id")?;
            if id <= self.last_id {
                bail!("event ids must grow: {id} after {}", self.last_id);
            }
            self.last_id = id;
            self.seen.push(event.clone());
            if event["type"] == kind {
                return Ok(event);
            }
        }
    }

    fn saw(&self, kind: &str) -> bool {
        self.seen.iter().any(|e| e["type"] == kind)
    }
}

async fn post(
    http: &reqwest::Client,
    base: &str,
    token: Option<&str>,
    body: &Value,
) -> anyhow::Result<(u16, Value)> {
    let mut req = http.post(format!("{base}/v1/messages")).json(body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await?;
    let status = resp.status().as_u16();
    Ok((status, resp.json().await?))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_message_reaches_a_ready_manager_and_the_whole_lifecycle_comes_back_to_the_client()
-> anyhow::Result<()> {
    let stack = Stack::from_env().await?;
    let engine = Engine::start(&stack).await?;
    let run = Uuid::new_v4().simple().to_string();
    let subject = format!("client-{run}");
    let client_id = e2e::web_client(&subject);
    let client_token = stack.token(Role::Client, &subject, "Ivan Petrov")?;
    let alice_token = stack.token(Role::Manager, &format!("alice-{run}"), "Alice")?;
    let bob_token = stack.token(Role::Manager, &format!("bob-{run}"), "Bob")?;
    let http = reqwest::Client::new();
    let base = format!("http://{}", engine.http.trim_start_matches("http://"));

    let mut events = Events::connect(&engine.http, &client_token).await?;
    let mut alice = Manager::connect(&engine.grpc, alice_token.clone()).await?;
    let mut bob = Manager::connect(&engine.grpc, bob_token).await?;

    // a. A message is accepted once; its retry returns the same id.
    let hello = json!({"body": "Hello, my transfer is stuck", "client_message_id": Uuid::new_v4()});
    let (status, first) = post(&http, &base, Some(&client_token), &hello).await?;
    assert_eq!(status, 202, "{first}");
    let hello_id = first["message_id"]
        .as_str()
        .context("message_id")?
        .to_owned();
    let accepted = events.next_of("message_accepted").await?;
    assert_eq!(accepted["message_id"], hello_id.as_str());
    let (status, again) = post(&http, &base, Some(&client_token), &hello).await?;
    assert_eq!(
        (status, again["message_id"].as_str()),
        (202, Some(hello_id.as_str()))
    );

    // Bad input gets a 4xx with a JSON error body.
    let cases: Vec<(Option<&str>, Value, u16)> = vec![
        (None, hello.clone(), 401),
        (Some("not-a-jwt"), hello.clone(), 401),
        (Some(&alice_token), hello.clone(), 403),
        (
            Some(&client_token),
            json!({"body": "  ", "client_message_id": Uuid::new_v4()}),
            422,
        ),
        (
            Some(&client_token),
            json!({"body": "x".repeat(5000), "client_message_id": Uuid::new_v4()}),
            422,
        ),
        (
            Some(&client_token),
            json!({"body": "hi", "client_message_id": "not-a-uuid"}),
            422,
        ),
        (
            Some(&client_token),
            json!({"body": "other text", "client_message_id": hello["client_message_id"]}),
            409,
        ),
    ];
    for (token, body, want) in cases {
        let (status, err) = post(&http, &base, token, &body).await?;
        assert_eq!(status, want, "{body} -> {err}");
        assert!(err["error"]["message"].is_string(), "{err}");
    }
    let resp = http
        .post(format!("{base}/v1/messages"))
        .bearer_auth(&client_token)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await?;
    assert_eq!(resp.status().as_u16(), 400);
    assert!(resp.json::<Value>().await?["error"]["message"].is_string());

    // d. A message with a card number is blocked and the client is warned.
    let card =
        json!({"body": "my card is 4111 1111 1111 1111", "client_message_id": Uuid::new_v4()});
    let (status, blocked) = post(&http, &base, Some(&client_token), &card).await?;
    assert_eq!(status, 202);
    let warning = events.next_of("message_blocked").await?;
    assert_eq!(warning["message_id"], blocked["message_id"]);
    assert!(warning["warning"].as_str().is_some_and(|w| !w.is_empty()));

    // e. Nobody is assigned before a manager says they are ready.
    assert!(!events.saw("manager_assigned"));
    assert!(alice.tickets(vec![]).await?.is_empty());
    alice.set_ready().await?;
    let assigned = events.next_of("manager_assigned").await?;
    assert_eq!(assigned["manager_name"], "Alice");
    let ticket_id = assigned["ticket_id"]
        .as_str()
        .context("ticket_id")?
        .to_owned();

    // f. The manager sees exactly the passed messages of their own ticket.
    let tickets = alice.tickets(vec![]).await?;
    assert_eq!(tickets.len(), 1);
    assert_eq!(
        (tickets[0].id.as_str(), tickets[0].client_id.as_str()),
        (ticket_id.as_str(), client_id.as_str())
    );
    assert_eq!(tickets[0].client_name, "Ivan Petrov");
    let messages = alice.messages(&ticket_id).await?;
    let bodies: Vec<&str> = messages.iter().map(|m| m.body.as_str()).collect();
    assert_eq!(bodies, vec!["Hello, my transfer is stuck"]);
    assert!(!messages.iter().any(|m| m.body.contains("4111")));

    // Another manager sees nothing of it, and bad requests are told apart.
    assert!(bob.tickets(vec![]).await?.is_empty());
    assert_eq!(
        bob.messages(&ticket_id)
            .await
            .map(|_| ())
            .map_err(|s| s.code()),
        Err(Code::NotFound)
    );
    assert_eq!(
        alice
            .messages("nope")
            .await
            .map(|_| ())
            .map_err(|s| s.code()),
        Err(Code::InvalidArgument)
    );
    let mut anonymous = Manager::connect(&engine.grpc, "garbage".into()).await?;
    assert_eq!(
        anonymous
            .tickets(vec![])
            .await
            .map(|_| ())
            .map_err(|s| s.code()),
        Err(Code::Unauthenticated)
    );
    let mut as_client = Manager::connect(&engine.grpc, client_token.clone()).await?;
    assert_eq!(
        as_client
            .tickets(vec![])
            .await
            .map(|_| ())
            .map_err(|s| s.code()),
        Err(Code::PermissionDenied)
    );

    // The reply reaches the client once, however often it is retried.
    let reply_id = alice
        .reply(&ticket_id, "Let me check that for you", "k1")
        .await?;
    assert_eq!(
        alice
            .reply(&ticket_id, "Let me check that for you", "k1")
            .await?,
        reply_id
    );
    let reply = events.next_of("manager_reply").await?;
    assert_eq!(
        (reply["message_id"].as_str(), reply["body"].as_str()),
        (Some(reply_id.as_str()), Some("Let me check that for you"))
    );

    // Resolving closes the ticket and ends its workflow.
    alice.resolve(&ticket_id).await?;
    let closed = events.next_of("ticket_closed").await?;
    assert_eq!(closed["ticket_id"], ticket_id.as_str());
    assert!(alice.tickets(vec![]).await?.is_empty());
    assert_eq!(
        alice.tickets(vec![v1::TicketStatus::Closed]).await?.len(),
        1
    );
    assert_eq!(
        alice
            .reply(&ticket_id, "late", "k2")
            .await
            .map(|_| ())
            .map_err(|s| s.code()),
        Err(Code::FailedPrecondition)
    );

    // The next message opens a new ticket, which waits for a ready manager again.
    let (status, _) = post(
        &http,
        &base,
        Some(&client_token),
        &json!({"body": "One more question", "client_message_id": Uuid::new_v4()}),
    )
    .await?;
    assert_eq!(status, 202);
    events.next_of("message_accepted").await?;
    let ready = alice.set_ready().await?;
    assert!(ready.capacity >= 1);
    let second = events.next_of("manager_assigned").await?;
    assert_ne!(second["ticket_id"], ticket_id.as_str());
    let messages = alice
        .messages(second["ticket_id"].as_str().context("ticket_id")?)
        .await?;
    assert_eq!(
        messages.iter().map(|m| m.body.as_str()).collect::<Vec<_>>(),
        vec!["One more question"]
    );

    // Reconnecting with the last event id resumes with nothing missed and nothing repeated.
    let last = events.last_id;
    events.ws.close(None).await?;
    let (status, _) = post(
        &http,
        &base,
        Some(&client_token),
        &json!({"body": "still there?", "client_message_id": Uuid::new_v4()}),
    )
    .await?;
    assert_eq!(status, 202);
    let url = format!(
        "ws://{}/v1/ws?token={client_token}&after={last}",
        engine.http.trim_start_matches("http://")
    );
    let (ws, _) = tokio_tungstenite::connect_async(url).await?;
    let mut resumed = Events {
        ws,
        last_id: last,
        seen: Vec::new(),
    };
    let accepted = resumed.next_of("message_accepted").await?;
    assert_eq!(accepted["body"], "still there?");
    Ok(())
}
