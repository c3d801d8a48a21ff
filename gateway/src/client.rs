//! `inbox.v1.ClientService`: a client's app. Every call runs as the caller of the bearer token (role
//! `client`) and sees only the caller's own chat (`tickets::chat`, filtered by the visibility rules).
//! `SendMessage` takes exactly the web chat's path: the same `InboundMessage` on Kafka, the same ids.

use prost::Message as _;
use proto::v1::{self, client_service_server::ClientService};
use tickets::{Author, ChatMessage, PgStore, Role, message_id_for, web_external_id};
use tonic::{Request, Response, Status};
use tracing::Instrument as _;

use crate::caller::{authenticate, authenticate_token};
use crate::manager::EventStream;
use crate::stream::{Audience, Streams};
use crate::{convert, status};

pub struct Clients {
    pub store: PgStore,
    /// `inbound.messages`, the web chat's own topic.
    pub inbound: platform::kafka::EdgeTopic,
    pub verifier: edge::auth::Verifier,
    pub streams: Streams,
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
        body: m.body,
        created_at: Some(convert::timestamp(m.created_at)),
        state: state as i32,
    }
}

#[tonic::async_trait]
impl ClientService for Clients {
    async fn send_message(
        &self,
        req: Request<v1::SendMessageRequest>,
    ) -> Result<Response<v1::SendMessageResponse>, Status> {
        let me = authenticate(&self.verifier, &req, Role::Client).await?;
        let r = req.get_ref();
        let body = crate::manager::body(&r.body)?;
        let key = convert::uuid("idempotency_key", r.idempotency_key.trim())?;
        let external_id = web_external_id(&me.user_id, key);
        let message_id = message_id_for("web", &external_id);
        // A retry of a message already stored is answered from the store, not published again.
        if let Some(stored) = self
            .store
            .client_message_body(message_id)
            .await
            .map_err(status::store)?
        {
            if stored != body.as_str() {
                return Err(status::key_reused("idempotency_key"));
            }
            return Ok(Response::new(v1::SendMessageResponse {
                message_id: message_id.to_string(),
            }));
        }
        let msg = v1::InboundMessage {
            message_id: message_id.to_string(),
            client_id: me.user_id.clone(),
            channel: "web".into(),
            external_id,
            body: body.into_inner(),
            client_name: me.display_name.clone(),
            received_at_unix_ms: chrono::Utc::now().timestamp_millis(),
        };
        // The root of the message's trace (export on); the record carries its context on.
        let span = if platform::telemetry::enabled() {
            tracing::info_span!("send_message", client_id = %me.user_id, %message_id)
        } else {
            tracing::Span::none()
        };
        self.inbound
            .publish(&msg.client_id, &msg.encode_to_vec())
            .instrument(span)
            .await
            .map_err(status::kafka)?;
        // After the ack, as the web chat counts it; a retry answered from the store is not.
        metrics::counter!("inbox_messages_accepted_total", "channel" => msg.channel.clone())
            .increment(1);
        tracing::info!(%message_id, client_id = %me.user_id, "client message accepted (grpc)");
        Ok(Response::new(v1::SendMessageResponse {
            message_id: message_id.to_string(),
        }))
    }

    async fn list_history(
        &self,
        req: Request<v1::ListHistoryRequest>,
    ) -> Result<Response<v1::ListHistoryResponse>, Status> {
        let me = authenticate(&self.verifier, &req, Role::Client).await?;
        let r = req.get_ref();
        let limit = convert::page_size(r.page_size, 50)?;
        let before = convert::page_token(&r.page_token)?;
        let page = self
            .store
            .client_history(&me.user_id, before, limit)
            .await
            .map_err(status::store)?;
        let read = self
            .store
            .read_state(&me.user_id)
            .await
            .map_err(status::store)?;
        let next_page_token = match (page.has_more, page.messages.first()) {
            (true, Some(oldest)) => oldest.cursor().encode(),
            _ => String::new(),
        };
        Ok(Response::new(v1::ListHistoryResponse {
            messages: page.messages.into_iter().map(chat_message).collect(),
            next_page_token,
            unread_count: read.unread,
        }))
    }

    async fn mark_read(
        &self,
        req: Request<v1::MarkReadRequest>,
    ) -> Result<Response<v1::MarkReadResponse>, Status> {
        let me = authenticate(&self.verifier, &req, Role::Client).await?;
        let id = convert::uuid("message_id", &req.get_ref().message_id)?;
        let read = self
            .store
            .mark_read(&me.user_id, id)
            .await
            .map_err(status::store)?
            .ok_or_else(|| Status::not_found("message not found"))?;
        Ok(Response::new(v1::MarkReadResponse {
            unread_count: read.unread,
        }))
    }

    type StreamEventsStream = EventStream;

    async fn stream_events(
        &self,
        req: Request<v1::StreamEventsRequest>,
    ) -> Result<Response<Self::StreamEventsStream>, Status> {
        let me = authenticate_token(&self.verifier, &req, Role::Client).await?;
        let after = req.get_ref().after_cursor;
        if after < 0 {
            return Err(status::invalid("after_cursor", "must not be negative"));
        }
        let until = me.remaining();
        Ok(Response::new(self.streams.open(
            Audience::Client(me.caller.user_id),
            after,
            until,
        )))
    }
}
