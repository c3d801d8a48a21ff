//! `inbox.v1.ManagerService`: what a manager's console calls. Every call runs as the caller of the
//! bearer token (role `manager`), and every read is limited by the store's visibility rules.

use proto::v1::{self, manager_service_server::ManagerService};
use tickets::{Author, Caller, Message, MessageBody, PgStore, Role, Ticket, TicketStatus};
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::status;

pub struct Managers {
    pub store: PgStore,
    pub tickets: workflow::client::Tickets,
    pub verifier: platform::auth::Verifier,
    pub default_capacity: i32,
}

impl Managers {
    fn manager<T>(&self, req: &Request<T>) -> Result<Caller, Status> {
        let header = req
            .metadata()
            .get("authorization")
            .map(|v| {
                v.to_str()
                    .map_err(|_| Status::unauthenticated("malformed authorization header"))
            })
            .transpose()?;
        let caller = self.verifier.verify_header(header).map_err(status::auth)?;
        platform::auth::require(&caller, Role::Manager).map_err(status::auth)?;
        Ok(caller)
    }
}

fn ticket_id(field: &str, raw: &str) -> Result<Uuid, Status> {
    Uuid::parse_str(raw).map_err(|_| status::invalid(field, "must be a UUID"))
}

fn timestamp(t: chrono::DateTime<chrono::Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: i32::try_from(t.timestamp_subsec_nanos()).unwrap_or(0),
    }
}

fn status_to_proto(s: TicketStatus) -> v1::TicketStatus {
    match s {
        TicketStatus::Open => v1::TicketStatus::Open,
        TicketStatus::Waiting => v1::TicketStatus::Waiting,
        TicketStatus::Assigned => v1::TicketStatus::Assigned,
        TicketStatus::Closed => v1::TicketStatus::Closed,
    }
}

fn status_from_proto(s: i32) -> Result<TicketStatus, Status> {
    match v1::TicketStatus::try_from(s) {
        Ok(v1::TicketStatus::Open) => Ok(TicketStatus::Open),
        Ok(v1::TicketStatus::Waiting) => Ok(TicketStatus::Waiting),
        Ok(v1::TicketStatus::Assigned) => Ok(TicketStatus::Assigned),
        Ok(v1::TicketStatus::Closed) => Ok(TicketStatus::Closed),
        _ => Err(status::invalid("statuses", "unknown ticket status")),
    }
}

fn ticket_to_proto(t: Ticket) -> v1::Ticket {
    v1::Ticket {
        id: t.id.to_string(),
        client_id: t.client_id,
        client_name: t.client_name,
        status: status_to_proto(t.status) as i32,
        manager_id: t.manager_id.unwrap_or_default(),
        created_at: Some(timestamp(t.created_at)),
        assigned_at: t.assigned_at.map(timestamp),
    }
}

fn message_to_proto(m: Message) -> v1::Message {
    let author = match m.author {
        Author::Client => v1::Author::Client,
        Author::Manager => v1::Author::Manager,
        Author::System => v1::Author::System,
    };
    v1::Message {
        id: m.id.to_string(),
        ticket_id: m.ticket_id.map(|t| t.to_string()).unwrap_or_default(),
        author: author as i32,
        body: m.body,
        created_at: Some(timestamp(m.created_at)),
    }
}

#[tonic::async_trait]
impl ManagerService for Managers {
    async fn set_ready(
        &self,
        req: Request<v1::SetReadyRequest>,
    ) -> Result<Response<v1::SetReadyResponse>, Status> {
        let me = self.manager(&req)?;
        let r = self
            .store
            .set_ready(&me, self.default_capacity)
            .await
            .map_err(status::store)?;
        if let Some(a) = &r.assigned {
            tracing::info!(ticket_id = %a.ticket_id, manager_id = %me.user_id, "ticket assigned");
        }
        Ok(Response::new(v1::SetReadyResponse {
            ready_slots: r.ready_slots,
            open_tickets: r.open_tickets,
            capacity: r.capacity,
            assigned_ticket_id: r
                .assigned
                .map(|a| a.ticket_id.to_string())
                .unwrap_or_default(),
        }))
    }

    async fn set_not_ready(
        &self,
        req: Request<v1::SetNotReadyRequest>,
    ) -> Result<Response<v1::SetNotReadyResponse>, Status> {
        let me = self.manager(&req)?;
        self.store
            .set_not_ready(&me.user_id)
            .await
            .map_err(status::store)?;
        Ok(Response::new(v1::SetNotReadyResponse {}))
    }

    async fn list_tickets(
        &self,
        req: Request<v1::ListTicketsRequest>,
    ) -> Result<Response<v1::ListTicketsResponse>, Status> {
        let me = self.manager(&req)?;
        let statuses = req
            .get_ref()
            .statuses
            .iter()
            .map(|s| status_from_proto(*s))
            .collect::<Result<Vec<_>, _>>()?;
        let tickets = self
            .store
            .manager_tickets(&me.user_id, &statuses)
            .await
            .map_err(status::store)?;
        Ok(Response::new(v1::ListTicketsResponse {
            tickets: tickets.into_iter().map(ticket_to_proto).collect(),
        }))
    }

    async fn list_messages(
        &self,
        req: Request<v1::ListMessagesRequest>,
    ) -> Result<Response<v1::ListMessagesResponse>, Status> {
        let me = self.manager(&req)?;
        let id = ticket_id("ticket_id", &req.get_ref().ticket_id)?;
        let messages = self
            .store
            .manager_messages(&me.user_id, id)
            .await
            .map_err(status::store)?;
        Ok(Response::new(v1::ListMessagesResponse {
            messages: messages.into_iter().map(message_to_proto).collect(),
        }))
    }

    async fn send_reply(
        &self,
        req: Request<v1::SendReplyRequest>,
    ) -> Result<Response<v1::SendReplyResponse>, Status> {
        let me = self.manager(&req)?;
        let r = req.get_ref();
        let id = ticket_id("ticket_id", &r.ticket_id)?;
        let body = MessageBody::parse(r.body.clone())
            .map_err(|e| status::invalid("body", &e.to_string()))?;
        let key = r.idempotency_key.trim();
        if key.is_empty() || key.len() > 200 {
            return Err(status::invalid(
                "idempotency_key",
                "must be 1 to 200 characters",
            ));
        }
        let message_id = self
            .store
            .send_reply(&me, id, key, body.as_str())
            .await
            .map_err(status::store)?;
        Ok(Response::new(v1::SendReplyResponse {
            message_id: message_id.to_string(),
        }))
    }

    async fn resolve_ticket(
        &self,
        req: Request<v1::ResolveTicketRequest>,
    ) -> Result<Response<v1::ResolveTicketResponse>, Status> {
        let me = self.manager(&req)?;
        let id = ticket_id("ticket_id", &req.get_ref().ticket_id)?;
        let ticket = self
            .store
            .manager_ticket(&me.user_id, id)
            .await
            .map_err(status::store)?;
        if ticket.status == TicketStatus::Closed {
            return Ok(Response::new(v1::ResolveTicketResponse {}));
        }
        self.tickets
            .resolve(&ticket.client_id, id, &me.user_id)
            .await
            .map_err(status::temporal)?;
        tracing::info!(ticket_id = %id, manager_id = %me.user_id, "resolve requested");
        Ok(Response::new(v1::ResolveTicketResponse {}))
    }
}
