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

    /// Uploads `data` for `ticket_id` and replies with it (and `body`).
    pub async fn reply_with_file(
        &mut self,
        ticket_id: &str,
        body: &str,
        key: &str,
        (name, content_type, data): (&str, &str, &[u8]),
    ) -> Result<String, tonic::Status> {
        let req = self.req(v1::UploadAttachmentRequest {
            ticket_id: ticket_id.into(),
            name: name.into(),
            content_type: content_type.into(),
            data: data.to_vec(),
        });
        let file = self
            .client
            .upload_attachment(req)
            .await?
            .into_inner()
            .attachment
            .unwrap_or_default();
        let req = self.req(v1::SendReplyRequest {
            ticket_id: ticket_id.into(),
            body: body.into(),
            idempotency_key: key.into(),
            attachment_ids: vec![file.id],
        });
        Ok(self.client.send_reply(req).await?.into_inner().message_id)
    }

    /// The file `attachment_id` as this manager may fetch it: its reference and bytes.
    pub async fn attachment(
        &mut self,
        attachment_id: &str,
    ) -> Result<(v1::Attachment, Vec<u8>), tonic::Status> {
        let req = self.req(v1::GetAttachmentRequest {
            attachment_id: attachment_id.into(),
        });
        let got = self.client.get_attachment(req).await?.into_inner();
        Ok((got.attachment.unwrap_or_default(), got.data))
    }

    /// The files of `ticket_id`'s messages this manager sees, oldest first.
    pub async fn files_of(
        &mut self,
        ticket_id: &str,
    ) -> Result<Vec<v1::Attachment>, tonic::Status> {
        Ok(self
            .messages(ticket_id)
            .await?
            .into_iter()
            .flat_map(|m| m.attachments)
            .collect())
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
