//! `inbox.v1.ManagerService`: what a manager's console calls. Every call runs as the caller of the
//! bearer token (role `manager`), and every read is limited by the store's visibility rules: a ticket
//! that is not the caller's answers `NOT_FOUND`, exactly like one that does not exist.

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use proto::v1::{self, manager_service_server::ManagerService};
use tickets::{Caller, MessageBody, PgStore, Role, Routing};
use tonic::{Request, Response, Status};

use crate::caller::{authenticate, authenticate_token};
use crate::convert;
use crate::status;
use edge::stream::{Audience, Streams};

#[derive(Clone)]
pub struct Managers {
    pub store: PgStore,
    pub verifier: edge::auth::Verifier,
    pub spec: Arc<spec::Spec>,
    pub streams: Streams,
    /// Each manager's budget of actions: one console spamming `SetReady` or replies cannot take
    /// the matching lock and the store from every other writer.
    pub limiter: edge::ratelimit::RateLimiter,
    /// Attachments: the managers' uploads and the files of the messages they may read.
    pub files: edge::files::Files,
}

impl Managers {
    async fn manager<T>(&self, req: &Request<T>) -> Result<Caller, Status> {
        authenticate(&self.verifier, req, Role::Manager).await
    }

    /// [`Self::manager`] for an action that writes (ready, reply, note, resolve, transfer,
    /// resend): within the manager's rate budget. Reads are not limited: a console refreshes.
    async fn acting_manager<T>(&self, req: &Request<T>) -> Result<Caller, Status> {
        let caller = self.manager(req).await?;
        self.limiter
            .check(&format!("manager:{}", caller.user_id))
            .map_err(|wait| status::rate_limited(edge::client::retry_after_secs(wait)))?;
        Ok(caller)
    }
}

/// Idempotency keys of replies and notes: 1 to 200 characters.
pub(crate) fn idempotency_key(raw: &str) -> Result<&str, Status> {
    let key = raw.trim();
    if key.is_empty() || key.len() > 200 {
        return Err(status::invalid(
            "idempotency_key",
            "must be 1 to 200 characters",
        ));
    }
    Ok(key)
}

pub(crate) fn body(raw: &str) -> Result<MessageBody, Status> {
    MessageBody::parse(raw).map_err(|e| status::invalid("body", &e.to_string()))
}

/// The fields of a reply or a note, checked: ticket id, body, idempotency key.
fn written<'k>(
    ticket_id: &str,
    raw_body: &str,
    raw_key: &'k str,
) -> Result<(uuid::Uuid, MessageBody, &'k str), Status> {
    Ok((
        convert::uuid("ticket_id", ticket_id)?,
        body(raw_body)?,
        idempotency_key(raw_key)?,
    ))
}

pub type EventStream = Pin<Box<dyn Stream<Item = Result<v1::Event, Status>> + Send>>;

#[tonic::async_trait]
impl ManagerService for Managers {
    async fn set_ready(
        &self,
        req: Request<v1::SetReadyRequest>,
    ) -> Result<Response<v1::SetReadyResponse>, Status> {
        let me = self.acting_manager(&req).await?;
        let policy = self.spec.manager_policy(&me.user_id);
        let routing = Routing {
            capacity: policy.capacity,
            queues: policy.queues,
        };
        let r = self
            .store
            .set_ready_routed(&me, &routing)
            .await
            .map_err(status::store)?;
        if let Some(a) = &r.assigned {
            // The workflow learns of it from the outbox relay (`ticket_assigned`), durably.
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
        let me = self.acting_manager(&req).await?;
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
        let me = self.manager(&req).await?;
        let r = req.get_ref();
        let statuses = convert::statuses(&r.statuses)?;
        let limit = convert::page_size(r.page_size, 50)?;
        let after = convert::page_token(&r.page_token)?;
        let page = self
            .store
            .manager_tickets_page(&me.user_id, &statuses, after, limit)
            .await
            .map_err(status::store)?;
        let next_page_token = match (page.has_more, page.items.last()) {
            (true, Some(t)) => tickets::desk::ticket_cursor(t).encode(),
            _ => String::new(),
        };
        Ok(Response::new(v1::ListTicketsResponse {
            tickets: page
                .items
                .into_iter()
                .map(|t| convert::ticket(t, self.spec.ticket.timers.first_response_within.as_ref()))
                .collect(),
            next_page_token,
        }))
    }

    async fn get_ticket(
        &self,
        req: Request<v1::GetTicketRequest>,
    ) -> Result<Response<v1::GetTicketResponse>, Status> {
        let me = self.manager(&req).await?;
        let id = convert::uuid("ticket_id", &req.get_ref().ticket_id)?;
        let ticket = self
            .store
            .manager_ticket(&me.user_id, id)
            .await
            .map_err(status::store)?;
        Ok(Response::new(v1::GetTicketResponse {
            ticket: Some(convert::ticket(
                ticket,
                self.spec.ticket.timers.first_response_within.as_ref(),
            )),
        }))
    }

    async fn list_messages(
        &self,
        req: Request<v1::ListMessagesRequest>,
    ) -> Result<Response<v1::ListMessagesResponse>, Status> {
        let me = self.manager(&req).await?;
        let r = req.get_ref();
        let id = convert::uuid("ticket_id", &r.ticket_id)?;
        let limit = convert::page_size(r.page_size, 100)?;
        let backwards = r.latest || !r.before.is_empty();
        let (after, page) = if backwards {
            let before = if r.latest {
                None
            } else {
                convert::page_token_of("before", &r.before)?
            };
            let page = self
                .store
                .manager_messages_before(&me.user_id, id, before, limit)
                .await
                .map_err(status::store)?;
            (None, page)
        } else {
            let after = convert::page_token(&r.page_token)?;
            let page = self
                .store
                .manager_messages_page(&me.user_id, id, after, limit)
                .await
                .map_err(status::store)?;
            (after, page)
        };
        // The last page also hands out a token: a console keeps it to read newer messages later.
        let next_page_token = page
            .items
            .last()
            .map(|m| m.cursor().encode())
            .or_else(|| after.map(|c| c.encode()))
            .unwrap_or_default();
        let older_page_token = if backwards && page.has_more {
            page.items
                .first()
                .map(|m| m.cursor().encode())
                .unwrap_or_default()
        } else {
            String::new()
        };
        let messages = page
            .items
            .into_iter()
            .map(|m| {
                let mut out = convert::message(m.message);
                if m.is_note {
                    out.author = v1::Author::Note as i32;
                }
                out.manager_id = m.manager_id.unwrap_or_default();
                out
            })
            .collect();
        Ok(Response::new(v1::ListMessagesResponse {
            messages,
            next_page_token,
            has_more: page.has_more,
            older_page_token,
        }))
    }

    async fn send_reply(
        &self,
        req: Request<v1::SendReplyRequest>,
    ) -> Result<Response<v1::SendReplyResponse>, Status> {
        let me = self.acting_manager(&req).await?;
        let r = req.get_ref();
        let files = convert::uuids("attachment_ids", &r.attachment_ids)?;
        self.files
            .check_count(files.len())
            .map_err(|e| status::invalid("attachment_ids", &e.to_string()))?;
        let id = convert::uuid("ticket_id", &r.ticket_id)?;
        let body = MessageBody::parse_with_files(r.body.as_str(), files.len())
            .map_err(|e| status::invalid("body", &e.to_string()))?;
        let key = idempotency_key(&r.idempotency_key)?;
        let message_id = self
            .store
            .send_reply_with_files(&me, id, key, body.as_str(), &files)
            .await
            .map_err(status::store)?;
        Ok(Response::new(v1::SendReplyResponse {
            message_id: message_id.to_string(),
        }))
    }

    async fn upload_attachment(
        &self,
        req: Request<v1::UploadAttachmentRequest>,
    ) -> Result<Response<v1::UploadAttachmentResponse>, Status> {
        let me = self.acting_manager(&req).await?;
        let r = req.into_inner();
        let ticket_id = convert::uuid("ticket_id", &r.ticket_id)?;
        // Only for a ticket of theirs (NOT_FOUND otherwise, as for every ticket call).
        self.store
            .manager_ticket(&me.user_id, ticket_id)
            .await
            .map_err(status::store)?;
        let upload = convert::upload(r.name, r.content_type, r.data);
        let by = tickets::attachments::Uploader::Manager {
            manager_id: &me.user_id,
            ticket_id,
        };
        let a = self
            .files
            .accept(&self.store, by, upload)
            .await
            .map_err(|e| status::file("data", e))?;
        Ok(Response::new(convert::uploaded(&a)))
    }

    async fn get_attachment(
        &self,
        req: Request<v1::GetAttachmentRequest>,
    ) -> Result<Response<v1::GetAttachmentResponse>, Status> {
        let me = self.manager(&req).await?;
        let id = convert::uuid("attachment_id", req.get_ref().attachment_id.trim())?;
        let (a, data) = self
            .files
            .fetch(
                &self.store,
                tickets::attachments::Reader::Manager(&me.user_id),
                id,
            )
            .await
            .map_err(|e| status::file("attachment_id", e))?
            .ok_or_else(|| Status::not_found("attachment not found"))?;
        Ok(Response::new(convert::fetched(&a, &data)))
    }

    async fn add_note(
        &self,
        req: Request<v1::AddNoteRequest>,
    ) -> Result<Response<v1::AddNoteResponse>, Status> {
        let me = self.acting_manager(&req).await?;
        let r = req.get_ref();
        let (id, body, key) = written(&r.ticket_id, &r.body, &r.idempotency_key)?;
        let note_id = self
            .store
            .add_note(&me, id, key, body.as_str())
            .await
            .map_err(status::store)?;
        Ok(Response::new(v1::AddNoteResponse {
            note_id: note_id.to_string(),
        }))
    }

    async fn resolve_ticket(
        &self,
        req: Request<v1::ResolveTicketRequest>,
    ) -> Result<Response<v1::ResolveTicketResponse>, Status> {
        let me = self.acting_manager(&req).await?;
        let id = convert::uuid("ticket_id", &req.get_ref().ticket_id)?;
        // Recorded, then signalled by the outbox relay: the request survives a Temporal outage
        // and reaches the workflow after the ticket's earlier lifecycle events.
        let requested = self
            .store
            .request_resolve(&me, id)
            .await
            .map_err(status::store)?;
        if requested {
            tracing::info!(ticket_id = %id, manager_id = %me.user_id, "resolve requested");
        }
        Ok(Response::new(v1::ResolveTicketResponse {}))
    }

    async fn send_typing(
        &self,
        req: Request<v1::SendTypingRequest>,
    ) -> Result<Response<v1::SendTypingResponse>, Status> {
        // Not an action on the ticket: no action budget spent (the throttle bounds it).
        let me = self.manager(&req).await?;
        let id = convert::uuid("ticket_id", &req.get_ref().ticket_id)?;
        if edge::client::typing_throttle().check(&me.user_id).is_ok() {
            self.store
                .manager_typing(&me.user_id, &me.display_name, id)
                .await
                .map_err(status::store)?;
        } else {
            // Dropped, but still only for a ticket of theirs: the answer never depends on timing.
            self.store
                .manager_ticket(&me.user_id, id)
                .await
                .map_err(status::store)?;
        }
        Ok(Response::new(v1::SendTypingResponse {}))
    }

    async fn search_messages(
        &self,
        req: Request<v1::SearchMessagesRequest>,
    ) -> Result<Response<v1::SearchMessagesResponse>, Status> {
        let me = self.manager(&req).await?;
        let (query, limit) = convert::search_request(req.get_ref())?;
        let hits = self
            .store
            .search_messages(
                tickets::search::SearchScope::Manager(&me.user_id),
                &query,
                limit,
            )
            .await
            .map_err(status::store)?;
        Ok(Response::new(convert::search_response(hits)))
    }

    async fn list_canned_responses(
        &self,
        req: Request<v1::ListCannedResponsesRequest>,
    ) -> Result<Response<v1::ListCannedResponsesResponse>, Status> {
        self.manager(&req).await?;
        Ok(Response::new(v1::ListCannedResponsesResponse {
            responses: self
                .spec
                .canned_responses
                .iter()
                .map(|c| v1::CannedResponse {
                    shortcut: c.shortcut.clone(),
                    title: c.title.clone(),
                    text: c.text.clone(),
                })
                .collect(),
        }))
    }

    async fn resend_delivery(
        &self,
        req: Request<v1::ResendDeliveryRequest>,
    ) -> Result<Response<v1::ResendDeliveryResponse>, Status> {
        let me = self.acting_manager(&req).await?;
        let r = req.get_ref();
        let id = convert::uuid("ticket_id", &r.ticket_id)?;
        if r.event_seq <= 0 {
            return Err(status::invalid("event_seq", "must be positive"));
        }
        let channel = self
            .store
            .request_resend(&me.user_id, id, r.event_seq)
            .await
            .map_err(status::store)?
            .ok_or_else(|| {
                Status::not_found("no delivery of this ticket of yours that may be sent again")
            })?;
        tracing::info!(ticket_id = %id, manager_id = %me.user_id, seq = r.event_seq, %channel,
            "resend requested");
        Ok(Response::new(v1::ResendDeliveryResponse { channel }))
    }

    async fn transfer_ticket(
        &self,
        req: Request<v1::TransferTicketRequest>,
    ) -> Result<Response<v1::TransferTicketResponse>, Status> {
        let me = self.acting_manager(&req).await?;
        let r = req.get_ref();
        let id = convert::uuid("ticket_id", &r.ticket_id)?;
        let to = r.to_manager_id.trim();
        if to.is_empty() || to == me.user_id {
            return Err(status::invalid(
                "to_manager_id",
                "must name another manager",
            ));
        }
        let a = self
            .store
            .transfer_ticket(&me, id, to)
            .await
            .map_err(status::store)?;
        tracing::info!(ticket_id = %id, manager_id = %me.user_id, to = %a.manager_id, "ticket transferred");
        Ok(Response::new(v1::TransferTicketResponse {
            manager_id: a.manager_id,
            manager_name: a.manager_name,
        }))
    }

    type StreamEventsStream = EventStream;

    async fn stream_events(
        &self,
        req: Request<v1::StreamEventsRequest>,
    ) -> Result<Response<Self::StreamEventsStream>, Status> {
        let me = authenticate_token(&self.verifier, &req, Role::Manager).await?;
        let after = req.get_ref().after_cursor;
        if after < 0 {
            return Err(status::invalid("after_cursor", "must not be negative"));
        }
        let until = me.remaining();
        let events = self
            .streams
            .open(Audience::Manager(me.caller.user_id), after, until)
            .map_err(status::too_many_streams)?;
        Ok(Response::new(crate::stream::grpc(events)))
    }
}
