//! `inbox.v1.ClientService`: a client's app, over the client core (`edge::client`) the web chat
//! uses too: the same admission (role `client`, rate limit), the same validation, the same
//! `InboundMessage` on Kafka with the same ids, the same visibility. This module only takes the
//! gRPC fields apart and says the outcome as gRPC statuses.

use edge::client::{ClientChat, ClientError, Field};
use proto::v1::{self, client_service_server::ClientService};
use tickets::{Author, ChatMessage};
use tonic::{Request, Response, Status};
use tracing::Instrument as _;

use crate::manager::EventStream;
use crate::{convert, status};

#[derive(Clone)]
pub struct Clients {
    pub chat: ClientChat,
}

/// The gRPC name of a request field.
fn field(f: Field) -> &'static str {
    match f {
        Field::Body => "body",
        Field::IdempotencyKey => "idempotency_key",
        Field::PageSize => "page_size",
        Field::PageToken => "page_token",
        Field::Cursor => "after_cursor",
        Field::Attachments => "attachment_ids",
    }
}

fn to_status(e: ClientError) -> Status {
    match e {
        ClientError::Auth(e) => status::auth(e),
        ClientError::RateLimited { retry_after_secs } => status::rate_limited(retry_after_secs),
        ClientError::Invalid { field: f, message } => status::invalid(field(f), &message),
        ClientError::KeyReused => status::key_reused(field(Field::IdempotencyKey)),
        ClientError::NoSuchMessage => Status::not_found("message not found"),
        ClientError::NoSuchAttachment => Status::not_found("attachment not found"),
        ClientError::File(e) => status::file("data", e),
        ClientError::TooManyStreams(e) => status::too_many_streams(e),
        ClientError::Bus(e) => status::kafka(e),
        ClientError::Store(e) => status::store(e),
    }
}

fn chat_message(m: ChatMessage) -> v1::ChatMessage {
    let state = match (m.author, m.status) {
        (Author::Client, "pending") => v1::DeliveryState::Pending,
        (Author::Client, _) => v1::DeliveryState::Delivered,
        _ => v1::DeliveryState::Unspecified,
    };
    v1::ChatMessage {
        id: m.id.to_string(),
        ticket_id: m.ticket_id.map(|t| t.to_string()).unwrap_or_default(),
        author: convert::author(m.author) as i32,
        attachments: m.attachments.iter().map(convert::attachment).collect(),
        body: m.body,
        created_at: Some(convert::timestamp(m.created_at)),
        state: state as i32,
    }
}

impl Clients {
    async fn client<T>(&self, req: &Request<T>) -> Result<edge::auth::Verified, Status> {
        let header = crate::caller::authorization(req)?;
        self.chat.admit_header(header).await.map_err(to_status)
    }
}

#[tonic::async_trait]
impl ClientService for Clients {
    async fn send_message(
        &self,
        req: Request<v1::SendMessageRequest>,
    ) -> Result<Response<v1::SendMessageResponse>, Status> {
        let me = self.client(&req).await?.caller;
        let r = req.get_ref();
        let key = convert::uuid("idempotency_key", r.idempotency_key.trim())?;
        let files = convert::uuids("attachment_ids", &r.attachment_ids)?;
        // The root of the message's trace (export on); the record carries its context on.
        let span = if platform::telemetry::enabled() {
            tracing::info_span!("send_message", client_id = %me.user_id)
        } else {
            tracing::Span::none()
        };
        let sent = self
            .chat
            .send(&me, &r.body, key, &files)
            .instrument(span)
            .await
            .map_err(to_status)?;
        Ok(Response::new(v1::SendMessageResponse {
            message_id: sent.message_id.to_string(),
        }))
    }

    async fn list_history(
        &self,
        req: Request<v1::ListHistoryRequest>,
    ) -> Result<Response<v1::ListHistoryResponse>, Status> {
        let me = self.client(&req).await?.caller;
        let r = req.get_ref();
        let limit = (r.page_size != 0).then(|| i64::from(r.page_size));
        let before = (!r.page_token.is_empty()).then_some(r.page_token.as_str());
        let page = self
            .chat
            .history(&me, before, limit)
            .await
            .map_err(to_status)?;
        let read = self.chat.read_state(&me).await.map_err(to_status)?;
        Ok(Response::new(v1::ListHistoryResponse {
            messages: page.messages.into_iter().map(chat_message).collect(),
            next_page_token: page.next_before.unwrap_or_default(),
            unread_count: read.unread,
        }))
    }

    async fn mark_read(
        &self,
        req: Request<v1::MarkReadRequest>,
    ) -> Result<Response<v1::MarkReadResponse>, Status> {
        let me = self.client(&req).await?.caller;
        let id = convert::uuid("message_id", &req.get_ref().message_id)?;
        let read = self.chat.mark_read(&me, id).await.map_err(to_status)?;
        Ok(Response::new(v1::MarkReadResponse {
            unread_count: read.unread,
        }))
    }

    async fn list_commands(
        &self,
        req: Request<v1::ListCommandsRequest>,
    ) -> Result<Response<v1::ListCommandsResponse>, Status> {
        self.client(&req).await?;
        Ok(Response::new(v1::ListCommandsResponse {
            commands: self
                .chat
                .commands()
                .iter()
                .map(|c| v1::BotCommand {
                    name: c.name.clone(),
                    description: c.description.clone(),
                })
                .collect(),
        }))
    }

    async fn send_typing(
        &self,
        req: Request<v1::ClientTypingRequest>,
    ) -> Result<Response<v1::ClientTypingResponse>, Status> {
        let me = self.client(&req).await?.caller;
        self.chat.typing(&me).await.map_err(to_status)?;
        Ok(Response::new(v1::ClientTypingResponse {}))
    }

    async fn upload_attachment(
        &self,
        req: Request<v1::ClientUploadAttachmentRequest>,
    ) -> Result<Response<v1::UploadAttachmentResponse>, Status> {
        let me = self.client(&req).await?.caller;
        let r = req.into_inner();
        let upload = convert::upload(r.name, r.content_type, r.data);
        let a = self.chat.upload(&me, upload).await.map_err(to_status)?;
        Ok(Response::new(convert::uploaded(&a)))
    }

    async fn get_attachment(
        &self,
        req: Request<v1::GetAttachmentRequest>,
    ) -> Result<Response<v1::GetAttachmentResponse>, Status> {
        let me = self.client(&req).await?.caller;
        let id = convert::uuid("attachment_id", req.get_ref().attachment_id.trim())?;
        let (a, data) = self.chat.download(&me, id).await.map_err(to_status)?;
        Ok(Response::new(convert::fetched(&a, &data)))
    }

    type StreamEventsStream = EventStream;

    async fn stream_events(
        &self,
        req: Request<v1::StreamEventsRequest>,
    ) -> Result<Response<Self::StreamEventsStream>, Status> {
        let me = self.client(&req).await?;
        let events = self
            .chat
            .events(&me, req.get_ref().after_cursor)
            .map_err(to_status)?;
        Ok(Response::new(crate::stream::grpc(events)))
    }
}
