//! `inbox.v1.AdminService`: the bank's back office (role `admin`) sees every manager and ticket.

use proto::v1::{self, admin_service_server::AdminService};
use tickets::admin::TicketFilter;
use tickets::admin::TicketRecord;
use tickets::{PgStore, Role};
use tonic::{Request, Response, Status};

use crate::caller::authenticate;
use crate::{convert, report_csv, status};

#[derive(Clone)]
pub struct Admins {
    pub store: PgStore,
    pub verifier: edge::auth::Verifier,
    /// The spec in force: dates the first-response SLA of the tickets listed.
    pub spec: std::sync::Arc<spec::Spec>,
}

fn admin_ticket(t: TicketRecord, spec: &spec::Spec) -> v1::AdminTicket {
    let ticket = t.ticket;
    v1::AdminTicket {
        waiting_since: ticket.waiting_since.map(convert::timestamp),
        closed_at: ticket.closed_at.map(convert::timestamp),
        close_reason: t.close_reason.unwrap_or_default(),
        queue: ticket.queue.clone(),
        priority: ticket.priority,
        category: ticket.category.clone(),
        ticket: Some(convert::ticket(
            ticket,
            spec.ticket.timers.first_response_within.as_ref(),
        )),
    }
}

/// The `queues` filter: each a non-blank name of at most 100 characters.
fn queues(raw: &[String]) -> Result<Vec<String>, Status> {
    raw.iter()
        .map(|q| {
            let q = q.trim();
            if q.is_empty() || q.chars().count() > 100 {
                Err(status::invalid(
                    "queues",
                    "each queue name must be 1 to 100 characters",
                ))
            } else {
                Ok(q.to_owned())
            }
        })
        .collect()
}

impl Admins {
    /// The report a `GetReportRequest` asks for (role admin).
    async fn report(
        &self,
        req: &Request<v1::GetReportRequest>,
    ) -> Result<tickets::reports::Report, Status> {
        authenticate(&self.verifier, req, Role::Admin).await?;
        let query = convert::report_request(req.get_ref(), chrono::Utc::now())?;
        self.store.report(&query).await.map_err(status::store)
    }
}

#[tonic::async_trait]
impl AdminService for Admins {
    async fn get_report(
        &self,
        req: Request<v1::GetReportRequest>,
    ) -> Result<Response<v1::GetReportResponse>, Status> {
        let report = self.report(&req).await?;
        Ok(Response::new(convert::report_response(&report)))
    }

    async fn export_report(
        &self,
        req: Request<v1::GetReportRequest>,
    ) -> Result<Response<v1::ExportReportResponse>, Status> {
        let report = self.report(&req).await?;
        let data = report_csv::write(&report).map_err(|e| {
            tracing::error!(error = %e, "report CSV");
            Status::internal("cannot write the CSV")
        })?;
        Ok(Response::new(v1::ExportReportResponse {
            content_type: report_csv::CONTENT_TYPE.into(),
            filename: report_csv::filename(&report),
            data,
        }))
    }

    async fn search_messages(
        &self,
        req: Request<v1::SearchMessagesRequest>,
    ) -> Result<Response<v1::SearchMessagesResponse>, Status> {
        authenticate(&self.verifier, &req, Role::Admin).await?;
        let (query, limit) = convert::search_request(req.get_ref())?;
        let hits = self
            .store
            .search_messages(tickets::search::SearchScope::Supervisor, &query, limit)
            .await
            .map_err(status::store)?;
        Ok(Response::new(convert::search_response(hits)))
    }

    async fn get_stats(
        &self,
        req: Request<v1::GetStatsRequest>,
    ) -> Result<Response<v1::GetStatsResponse>, Status> {
        authenticate(&self.verifier, &req, Role::Admin).await?;
        let hours = match req.get_ref().hours {
            0 => 24,
            h @ 1..=168 => h,
            _ => return Err(status::invalid("hours", "1 to 168 (0: 24)")),
        };
        let s = self.store.stats(hours).await.map_err(status::store)?;
        Ok(Response::new(v1::GetStatsResponse {
            queues: s
                .queues
                .into_iter()
                .map(|q| v1::QueueNow {
                    queue: q.queue,
                    waiting: q.waiting,
                    oldest_wait_seconds: q.oldest_wait_secs,
                })
                .collect(),
            waiting: s
                .waiting
                .into_iter()
                .map(|(queue, at, waiting)| v1::WaitingPoint {
                    queue,
                    at: Some(convert::timestamp(at)),
                    waiting,
                })
                .collect(),
            bucket_seconds: s.bucket_secs,
            first_response_seconds: s.first_response_secs,
            ratings: s.ratings.to_vec(),
        }))
    }

    async fn list_managers(
        &self,
        req: Request<v1::ListManagersRequest>,
    ) -> Result<Response<v1::ListManagersResponse>, Status> {
        authenticate(&self.verifier, &req, Role::Admin).await?;
        let managers = self
            .store
            .managers_overview()
            .await
            .map_err(status::store)?
            .into_iter()
            .map(|m| v1::ManagerState {
                id: m.id,
                display_name: m.display_name,
                capacity: m.capacity,
                ready_slots: m.ready_slots,
                open_tickets: m.open_tickets,
                ready_since: m.ready_since.map(convert::timestamp),
            })
            .collect();
        Ok(Response::new(v1::ListManagersResponse { managers }))
    }

    async fn list_tickets(
        &self,
        req: Request<v1::AdminListTicketsRequest>,
    ) -> Result<Response<v1::AdminListTicketsResponse>, Status> {
        authenticate(&self.verifier, &req, Role::Admin).await?;
        let r = req.get_ref();
        let statuses = convert::statuses(&r.statuses)?;
        let limit = convert::page_size(r.page_size, 50)?;
        let after = convert::page_token(&r.page_token)?;
        let created_before = match r.older_than_seconds {
            0 => None,
            s if s > 0 => Some(chrono::Utc::now() - chrono::Duration::seconds(s)),
            _ => {
                return Err(status::invalid(
                    "older_than_seconds",
                    "must not be negative",
                ));
            }
        };
        let filter = TicketFilter {
            statuses,
            queues: queues(&r.queues)?,
            created_before,
        };
        let page = self
            .store
            .tickets_filtered(&filter, after, limit)
            .await
            .map_err(status::store)?;
        let next_page_token = match (page.has_more, page.items.last()) {
            (true, Some(t)) => tickets::desk::ticket_cursor(&t.ticket).encode(),
            _ => String::new(),
        };
        Ok(Response::new(v1::AdminListTicketsResponse {
            tickets: page
                .items
                .into_iter()
                .map(|t| admin_ticket(t, &self.spec))
                .collect(),
            next_page_token,
        }))
    }

    async fn get_audit_trail(
        &self,
        req: Request<v1::GetAuditTrailRequest>,
    ) -> Result<Response<v1::GetAuditTrailResponse>, Status> {
        authenticate(&self.verifier, &req, Role::Admin).await?;
        let id = convert::uuid("ticket_id", &req.get_ref().ticket_id)?;
        let trail = self
            .store
            .audit_trail(id)
            .await
            .map_err(status::store)?
            .ok_or_else(|| Status::not_found("ticket not found"))?;
        Ok(Response::new(v1::GetAuditTrailResponse {
            ticket: Some(admin_ticket(trail.ticket, &self.spec)),
            events: trail
                .events
                .into_iter()
                .map(|e| v1::AuditEvent {
                    seq: e.seq,
                    kind: e.kind,
                    client_visible: e.client_visible,
                    manager_id: e.manager_id.unwrap_or_default(),
                    payload: Some(convert::json_to_struct(e.payload)),
                    created_at: Some(convert::timestamp(e.created_at)),
                })
                .collect(),
            verdicts: trail
                .verdicts
                .into_iter()
                .map(|v| v1::AfcVerdict {
                    message_id: v.message_id.to_string(),
                    afc_status: v.afc_status,
                    rule: v.rule.unwrap_or_default(),
                    created_at: Some(convert::timestamp(v.created_at)),
                })
                .collect(),
        }))
    }

    async fn simulate_spec(
        &self,
        req: Request<v1::SimulateSpecRequest>,
    ) -> Result<Response<v1::SimulateSpecResponse>, Status> {
        authenticate(&self.verifier, &req, Role::Admin).await?;
        let r = req.get_ref();
        if r.yaml.len() > 1024 * 1024 {
            return Err(status::invalid("yaml", "must be at most 1 MiB"));
        }
        let new = spec::Spec::parse("workflows.yaml", &r.yaml)
            .map_err(|e| status::invalid("yaml", &e.to_string()))?;
        let period = convert::simulation_period(r, chrono::Utc::now())?;
        let examples = match r.examples {
            0 => 5,
            n @ 1..=50 => usize::try_from(n).unwrap_or(5),
            _ => return Err(status::invalid("examples", "must be 0 to 50")),
        };
        let run = spec::simulate::dry_run_recorded(
            &self.store,
            &new.ticket,
            &period,
            tickets::simulation::DEFAULT_MAX_TICKETS,
            examples,
        )
        .await
        .map_err(status::store)?;
        Ok(Response::new(convert::simulate_response(
            &period,
            &new.ticket.version,
            &run,
        )))
    }

    async fn validate_spec(
        &self,
        req: Request<v1::ValidateSpecRequest>,
    ) -> Result<Response<v1::ValidateSpecResponse>, Status> {
        authenticate(&self.verifier, &req, Role::Admin).await?;
        let yaml = &req.get_ref().yaml;
        if yaml.len() > 1024 * 1024 {
            return Err(status::invalid("yaml", "must be at most 1 MiB"));
        }
        Ok(Response::new(
            match spec::Spec::parse("workflows.yaml", yaml) {
                Ok(spec) => v1::ValidateSpecResponse {
                    valid: true,
                    error: String::new(),
                    capacity: spec.capacity,
                },
                Err(e) => v1::ValidateSpecResponse {
                    valid: false,
                    error: e.to_string(),
                    capacity: 0,
                },
            },
        ))
    }
}
