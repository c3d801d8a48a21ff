//! Domain values to protobuf messages and request fields to domain values (with field violations).

use proto::v1;
use spec::simulate::{DifferenceKind, DryRun, Totals};
use tickets::reports::{self, GroupBy, Report, ReportError, ReportQuery};
use tickets::simulation::{SimulationError, SimulationPeriod};
use tickets::{Author, ChatCursor, Event, Message, Ticket, TicketStatus};
use tonic::Status;
use uuid::Uuid;

use crate::status;

/// Largest page any list RPC returns.
pub const MAX_PAGE: i32 = 500;

pub fn uuid(field: &str, raw: &str) -> Result<Uuid, Status> {
    Uuid::parse_str(raw).map_err(|_| status::invalid(field, "must be a UUID"))
}

/// `page_size` of a request: 0 means `default`, otherwise 1 to [`MAX_PAGE`].
pub fn page_size(raw: i32, default: i64) -> Result<i64, Status> {
    match raw {
        0 => Ok(default),
        1..=MAX_PAGE => Ok(i64::from(raw)),
        _ => Err(status::invalid(
            "page_size",
            &format!("must be 0 (default) or 1 to {MAX_PAGE}"),
        )),
    }
}

/// `page_token` of a request: empty for the first page.
pub fn page_token(raw: &str) -> Result<Option<ChatCursor>, Status> {
    page_token_of("page_token", raw)
}

/// A page token in request field `field` (empty: none).
pub fn page_token_of(field: &str, raw: &str) -> Result<Option<ChatCursor>, Status> {
    if raw.is_empty() {
        return Ok(None);
    }
    ChatCursor::decode(raw)
        .map(Some)
        .map_err(|_| status::invalid(field, "is not a token this API returned"))
}

pub fn timestamp(t: chrono::DateTime<chrono::Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: i32::try_from(t.timestamp_subsec_nanos()).unwrap_or(0),
    }
}

pub fn status_to_proto(s: TicketStatus) -> v1::TicketStatus {
    match s {
        TicketStatus::Open => v1::TicketStatus::Open,
        TicketStatus::Waiting => v1::TicketStatus::Waiting,
        TicketStatus::Assigned => v1::TicketStatus::Assigned,
        TicketStatus::Closed => v1::TicketStatus::Closed,
    }
}

pub fn statuses(raw: &[i32]) -> Result<Vec<TicketStatus>, Status> {
    raw.iter()
        .map(|s| match v1::TicketStatus::try_from(*s) {
            Ok(v1::TicketStatus::Open) => Ok(TicketStatus::Open),
            Ok(v1::TicketStatus::Waiting) => Ok(TicketStatus::Waiting),
            Ok(v1::TicketStatus::Assigned) => Ok(TicketStatus::Assigned),
            Ok(v1::TicketStatus::Closed) => Ok(TicketStatus::Closed),
            _ => Err(status::invalid("statuses", "unknown ticket status")),
        })
        .collect()
}

/// A ticket as the API shows it; `first_response` is the spec's SLA timer, which dates the
/// first response of a ticket not yet answered (from when it was queued).
pub fn ticket(t: Ticket, first_response: Option<&spec::TimerSpec>) -> v1::Ticket {
    let due = match (first_response, t.waiting_since, t.first_response_at) {
        (Some(timer), Some(since), None) => {
            chrono::DateTime::from_timestamp_millis(timer.deadline_ms(since.timestamp_millis(), 1))
        }
        _ => None,
    };
    v1::Ticket {
        id: t.id.to_string(),
        channel: t.channel().to_owned(),
        client_id: t.client_id,
        client_name: t.client_name,
        status: status_to_proto(t.status) as i32,
        manager_id: t.manager_id.unwrap_or_default(),
        created_at: Some(timestamp(t.created_at)),
        assigned_at: t.assigned_at.map(timestamp),
        queue: t.queue,
        category: t.category,
        priority: t.priority,
        fields: Some(json_to_struct(t.fields)),
        waiting_since: t.waiting_since.map(timestamp),
        first_response_at: t.first_response_at.map(timestamp),
        first_response_due_at: due.map(timestamp),
        closed_at: t.closed_at.map(timestamp),
        rating: t.rating.map(i32::from).unwrap_or(0),
    }
}

/// A search request's query and page size, checked.
pub fn search_request(r: &v1::SearchMessagesRequest) -> Result<(String, i64), Status> {
    let query = r.query.trim();
    if query.is_empty() || query.chars().count() > tickets::search::MAX_QUERY_CHARS {
        return Err(status::invalid("query", "1 to 200 characters"));
    }
    let limit = match r.page_size {
        0 => 20,
        n @ 1..=100 => i64::from(n),
        _ => return Err(status::invalid("page_size", "1 to 100 (0: 20)")),
    };
    Ok((query.to_owned(), limit))
}

/// Search hits as the API shows them.
pub fn search_response(hits: Vec<tickets::search::SearchHit>) -> v1::SearchMessagesResponse {
    v1::SearchMessagesResponse {
        hits: hits
            .into_iter()
            .map(|h| v1::SearchHit {
                message: Some(v1::Message {
                    id: h.message_id.to_string(),
                    ticket_id: h.ticket_id.to_string(),
                    author: Author::parse(&h.author).map_or(v1::Author::Unspecified, author) as i32,
                    body: h.body,
                    created_at: Some(timestamp(h.created_at)),
                    manager_id: String::new(),
                    attachments: Vec::new(),
                }),
                client_id: h.client_id,
                snippet: h.snippet,
            })
            .collect(),
    }
}

pub fn author(a: Author) -> v1::Author {
    match a {
        Author::Client => v1::Author::Client,
        Author::Manager => v1::Author::Manager,
        Author::System => v1::Author::System,
    }
}

/// The ids of a request's repeated field `field`, each a UUID.
pub fn uuids(field: &str, raw: &[String]) -> Result<Vec<Uuid>, Status> {
    raw.iter()
        .enumerate()
        .map(|(i, r)| uuid(&format!("{field}[{i}]"), r.trim()))
        .collect()
}

pub fn attachment(a: &tickets::AttachmentRef) -> v1::Attachment {
    v1::Attachment {
        id: a.id.to_string(),
        name: a.name.clone(),
        content_type: a.content_type.clone(),
        size: a.size,
    }
}

/// An upload request's file.
pub fn upload(name: String, content_type: String, data: Vec<u8>) -> edge::files::Upload {
    edge::files::Upload {
        name,
        content_type,
        data: data.into(),
    }
}

pub fn uploaded(a: &tickets::AttachmentRef) -> v1::UploadAttachmentResponse {
    v1::UploadAttachmentResponse {
        attachment: Some(attachment(a)),
    }
}

pub fn fetched(a: &tickets::AttachmentRef, data: &[u8]) -> v1::GetAttachmentResponse {
    v1::GetAttachmentResponse {
        attachment: Some(attachment(a)),
        data: data.to_vec(),
    }
}

pub fn message(m: Message) -> v1::Message {
    v1::Message {
        attachments: m.attachments.iter().map(attachment).collect(),
        id: m.id.to_string(),
        ticket_id: m.ticket_id.map(|t| t.to_string()).unwrap_or_default(),
        author: author(m.author) as i32,
        body: m.body,
        created_at: Some(timestamp(m.created_at)),
        manager_id: String::new(),
    }
}

pub fn json_to_struct(v: serde_json::Value) -> prost_types::Struct {
    match v {
        serde_json::Value::Object(map) => prost_types::Struct {
            fields: map
                .into_iter()
                .map(|(k, v)| (k, json_to_value(v)))
                .collect(),
        },
        other => prost_types::Struct {
            fields: [("value".to_owned(), json_to_value(other))].into(),
        },
    }
}

fn json_to_value(v: serde_json::Value) -> prost_types::Value {
    use prost_types::value::Kind;
    let kind = match v {
        serde_json::Value::Null => Kind::NullValue(0),
        serde_json::Value::Bool(b) => Kind::BoolValue(b),
        serde_json::Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or_default()),
        serde_json::Value::String(s) => Kind::StringValue(s),
        serde_json::Value::Array(a) => Kind::ListValue(prost_types::ListValue {
            values: a.into_iter().map(json_to_value).collect(),
        }),
        o @ serde_json::Value::Object(_) => Kind::StructValue(json_to_struct(o)),
    };
    prost_types::Value { kind: Some(kind) }
}

pub fn event(e: Event) -> v1::Event {
    v1::Event {
        cursor: e.seq,
        kind: e.kind,
        ticket_id: e.ticket_id.map(|t| t.to_string()).unwrap_or_default(),
        payload: Some(json_to_struct(e.payload)),
        created_at: Some(timestamp(e.created_at)),
    }
}

/// A request timestamp (`None` when unset); a bad one is a violation of `field`.
fn instant(
    field: &str,
    ts: Option<&prost_types::Timestamp>,
) -> Result<Option<chrono::DateTime<chrono::Utc>>, Status> {
    let Some(ts) = ts else { return Ok(None) };
    u32::try_from(ts.nanos)
        .ok()
        .and_then(|nanos| chrono::DateTime::from_timestamp(ts.seconds, nanos))
        .map(Some)
        .ok_or_else(|| status::invalid(field, "is not a valid timestamp"))
}

/// What a `GetReportRequest` asks for, its defaults filled in from `now`.
pub fn report_request(
    r: &v1::GetReportRequest,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<ReportQuery, Status> {
    let tz = reports::time_zone(&r.time_zone)
        .map_err(|e| status::invalid("time_zone", &e.to_string()))?;
    let group_by = match v1::ReportGroupBy::try_from(r.group_by) {
        Ok(v1::ReportGroupBy::Unspecified | v1::ReportGroupBy::Day) => GroupBy::Day,
        Ok(v1::ReportGroupBy::Queue) => GroupBy::Queue,
        Ok(v1::ReportGroupBy::Manager) => GroupBy::Manager,
        Ok(v1::ReportGroupBy::Channel) => GroupBy::Channel,
        Err(_) => return Err(status::invalid("group_by", "unknown grouping")),
    };
    let end = instant("end_time", r.end_time.as_ref())?.unwrap_or(now);
    let start = instant("start_time", r.start_time.as_ref())?
        .unwrap_or_else(|| ReportQuery::default_start(end, tz));
    ReportQuery::new(start, end, group_by, tz).map_err(|e| match e {
        ReportError::EmptyPeriod => status::invalid("end_time", "must be after start_time"),
        ReportError::PeriodTooLong => status::invalid("start_time", &e.to_string()),
        ReportError::UnknownTimeZone(_) => status::invalid("time_zone", &e.to_string()),
    })
}

fn group_by_to_proto(g: GroupBy) -> v1::ReportGroupBy {
    match g {
        GroupBy::Day => v1::ReportGroupBy::Day,
        GroupBy::Queue => v1::ReportGroupBy::Queue,
        GroupBy::Manager => v1::ReportGroupBy::Manager,
        GroupBy::Channel => v1::ReportGroupBy::Channel,
    }
}

fn durations(d: &reports::Durations) -> v1::DurationStats {
    v1::DurationStats {
        count: d.count,
        avg_seconds: d.avg_secs.unwrap_or(0.0),
        p50_seconds: d.p50_secs.unwrap_or(0.0),
        p90_seconds: d.p90_secs.unwrap_or(0.0),
    }
}

fn report_row(r: &reports::ReportRow) -> v1::ReportRow {
    v1::ReportRow {
        key: r.key.clone(),
        name: r.name.clone(),
        opened: r.opened,
        closed: r.closed,
        first_response: Some(durations(&r.first_response)),
        resolution: Some(durations(&r.resolution)),
        waiting: Some(durations(&r.waiting)),
        escalations: r.escalations,
        sla_breaches: r.sla_breaches,
        ratings: r.csat.count,
        rating_avg: r.csat.average.unwrap_or(0.0),
        satisfied_percent: r.csat.satisfied_percent().unwrap_or(0.0),
    }
}

pub fn report_response(r: &Report) -> v1::GetReportResponse {
    v1::GetReportResponse {
        start_time: Some(timestamp(r.query.start())),
        end_time: Some(timestamp(r.query.end())),
        group_by: group_by_to_proto(r.query.group_by()) as i32,
        time_zone: r.query.time_zone().name().to_owned(),
        rows: r.rows.iter().map(report_row).collect(),
        total: Some(report_row(&r.total)),
        truncated: r.truncated,
    }
}

/// The period of a `SimulateSpecRequest`, its defaults filled in from `now`.
pub fn simulation_period(
    r: &v1::SimulateSpecRequest,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<SimulationPeriod, Status> {
    let end = instant("end_time", r.end_time.as_ref())?.unwrap_or(now);
    let start =
        instant("start_time", r.start_time.as_ref())?.unwrap_or(end - chrono::Duration::days(7));
    SimulationPeriod::new(start, end).map_err(|e| match e {
        SimulationError::EmptyPeriod => status::invalid("end_time", "must be after start_time"),
        SimulationError::PeriodTooLong => status::invalid("start_time", &e.to_string()),
    })
}

fn difference_kind(k: DifferenceKind) -> v1::SimulationDifferenceKind {
    use v1::SimulationDifferenceKind as P;
    match k {
        DifferenceKind::QueueChanged => P::QueueChanged,
        DifferenceKind::PriorityChanged => P::PriorityChanged,
        DifferenceKind::EscalationsAdded => P::EscalationsAdded,
        DifferenceKind::EscalationsAvoided => P::EscalationsAvoided,
        DifferenceKind::SlaBreachAdded => P::SlaBreachAdded,
        DifferenceKind::SlaBreachAvoided => P::SlaBreachAvoided,
        DifferenceKind::AutoCloseAdded => P::AutoCloseAdded,
        DifferenceKind::AutoCloseAvoided => P::AutoCloseAvoided,
    }
}

fn totals(t: &Totals) -> v1::SimulationTotals {
    let n = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    v1::SimulationTotals {
        escalations: n(t.escalations),
        escalated_tickets: n(t.escalated_tickets),
        sla_breaches: n(t.sla_breaches),
        auto_closes: n(t.auto_closes),
    }
}

pub fn simulate_response(
    period: &SimulationPeriod,
    spec_version: &str,
    run: &DryRun,
) -> v1::SimulateSpecResponse {
    let n = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    v1::SimulateSpecResponse {
        start_time: Some(timestamp(period.start)),
        end_time: Some(timestamp(period.end)),
        spec_version: spec_version.to_owned(),
        scanned: n(run.scanned),
        simulated: n(run.simulated),
        truncated: run.truncated,
        as_of: Some(timestamp(run.as_of)),
        before: Some(totals(&run.before)),
        after: Some(totals(&run.after)),
        differences: run
            .differences
            .iter()
            .map(|d| v1::SimulationDifference {
                kind: difference_kind(d.kind).into(),
                tickets: n(d.tickets),
                examples: d
                    .examples
                    .iter()
                    .map(|e| v1::SimulationExample {
                        ticket_id: e.ticket_id.to_string(),
                        before: e.before.clone(),
                        after: e.after.clone(),
                    })
                    .collect(),
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_size_zero_means_default_and_out_of_range_is_invalid() {
        assert_eq!(page_size(0, 50).ok(), Some(50));
        assert_eq!(page_size(7, 50).ok(), Some(7));
        for bad in [-1, MAX_PAGE + 1] {
            let e = page_size(bad, 50).err().map(|s| s.code());
            assert_eq!(e, Some(tonic::Code::InvalidArgument));
        }
    }

    #[test]
    fn a_foreign_page_token_is_invalid_and_an_empty_one_starts_at_the_beginning() {
        assert!(matches!(page_token(""), Ok(None)));
        assert_eq!(
            page_token("garbage").err().map(|s| s.code()),
            Some(tonic::Code::InvalidArgument)
        );
    }

    #[test]
    fn json_payloads_become_structs_field_by_field() {
        let s = json_to_struct(serde_json::json!({"a": "x", "n": 2, "l": [true, null]}));
        assert_eq!(s.fields.len(), 3);
        assert!(matches!(
            s.fields.get("a").and_then(|v| v.kind.clone()),
            Some(prost_types::value::Kind::StringValue(x)) if x == "x"
        ));
    }
}
