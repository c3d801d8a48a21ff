//! A manager's console in tests: the gRPC `ManagerService` with the manager's bearer token, and
//! waits (with a deadline) for what the manager should come to see.

use std::time::Duration;

use anyhow::bail;
use proto::v1::{self, manager_service_client::ManagerServiceClient};
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;

/// How long a manager waits for a client's message before the test fails.
pub const WAIT: Duration = Duration::from_secs(60);

pub struct Manager {
    pub client: ManagerServiceClient<Channel>,
    token: String,
}

impl Manager {
    /// Connects to the gateway at `grpc_url` (`http://host:port`) as the holder of `token`.
    pub async fn connect(grpc_url: &str, token: String) -> anyhow::Result<Self> {
        let channel = Channel::from_shared(grpc_url.to_owned())?.connect().await?;
        Ok(Self {
            client: ManagerServiceClient::new(channel),
            token,
        })
    }

    /// The manager's event stream from the beginning (`after_cursor` 0).
    pub async fn events(&self) -> Result<tonic::Streaming<v1::Event>, tonic::Status> {
        Ok(self
            .client
            .clone()
            .stream_events(self.req(v1::StreamEventsRequest { after_cursor: 0 }))
            .await?
            .into_inner())
    }

    /// `msg` with the manager's `authorization` header.
    pub fn req<T>(&self, msg: T) -> tonic::Request<T> {
        let mut r = tonic::Request::new(msg);
        if let Ok(v) = MetadataValue::try_from(format!("Bearer {}", self.token)) {
            r.metadata_mut().insert("authorization", v);
        }
        r
    }

    pub async fn set_ready(&mut self) -> Result<v1::SetReadyResponse, tonic::Status> {
        let req = self.req(v1::SetReadyRequest {});
        Ok(self.client.set_ready(req).await?.into_inner())
    }

    pub async fn tickets(
        &mut self,
        statuses: Vec<v1::TicketStatus>,
    ) -> Result<Vec<v1::Ticket>, tonic::Status> {
        let req = self.req(v1::ListTicketsRequest {
            statuses: statuses.into_iter().map(|s| s as i32).collect(),
            ..Default::default()
        });
        Ok(self.client.list_tickets(req).await?.into_inner().tickets)
    }

    pub async fn messages(&mut self, ticket_id: &str) -> Result<Vec<v1::Message>, tonic::Status> {
        let req = self.req(v1::ListMessagesRequest {
            ticket_id: ticket_id.into(),
            ..Default::default()
        });
        Ok(self.client.list_messages(req).await?.into_inner().messages)
    }

    pub async fn reply(
        &mut self,
        ticket_id: &str,
        body: &str,
        key: &str,
    ) -> Result<String, tonic::Status> {
        let req = self.req(v1::SendReplyRequest {
            ticket_id: ticket_id.into(),
            body: body.into(),
            idempotency_key: key.into(),
            ..Default::default()
        });
        Ok(self.client.send_reply(req).await?.into_inner().message_id)
    }

    pub async fn resolve(&mut self, ticket_id: &str) -> Result<(), tonic::Status> {
        let req = self.req(v1::ResolveTicketRequest {
            ticket_id: ticket_id.into(),
        });
        self.client.resolve_ticket(req).await?;
        Ok(())
    }

    /// Waits (up to [`WAIT`]) until one of the manager's tickets of `client_id` holds messages
    /// whose bodies `done` accepts; returns that ticket's id and bodies. `what` names the
    /// expectation in the failure message.
    pub async fn wait_for_ticket(
        &mut self,
        client_id: &str,
        what: &str,
        done: impl Fn(&[String]) -> bool,
    ) -> anyhow::Result<(String, Vec<String>)> {
        let mut poll = testkit::Poll::new(WAIT, Duration::from_millis(200));
        let mut seen = Vec::new();
        while poll.next().await {
            let tickets = self.tickets(Vec::new()).await?;
            seen.clear();
            for t in tickets.iter().filter(|t| t.client_id == client_id) {
                let bodies: Vec<String> = self
                    .messages(&t.id)
                    .await?
                    .into_iter()
                    .map(|m| m.body)
                    .collect();
                if done(&bodies) {
                    return Ok((t.id.clone(), bodies));
                }
                seen.extend(bodies);
            }
        }
        bail!("{what} of {client_id} did not reach the manager within {WAIT:?}: {seen:?}")
    }

    /// [`Manager::wait_for_ticket`] until a message of `client_id` reads exactly `body`.
    pub async fn wait_for_message(
        &mut self,
        client_id: &str,
        body: &str,
    ) -> anyhow::Result<(String, Vec<String>)> {
        self.wait_for_ticket(client_id, &format!("{body:?}"), |bodies| {
            bodies.iter().any(|b| b == body)
        })
        .await
    }

    /// [`Manager::wait_for_ticket`] until one ticket of `client_id` holds every body of `bodies`.
    pub async fn wait_for_all(
        &mut self,
        client_id: &str,
        bodies: &[&str],
    ) -> anyhow::Result<(String, Vec<String>)> {
        self.wait_for_ticket(client_id, &format!("{bodies:?}"), |seen| {
            bodies.iter().all(|b| seen.iter().any(|s| s == b))
        })
        .await
    }

    /// [`Manager::wait_for_ticket`] until a message of `client_id` has a body `pred` accepts.
    pub async fn wait_for_body(
        &mut self,
        client_id: &str,
        what: &str,
        pred: impl Fn(&str) -> bool,
    ) -> anyhow::Result<(String, Vec<String>)> {
        self.wait_for_ticket(client_id, what, |bodies| bodies.iter().any(|b| pred(b)))
            .await
    }
}
