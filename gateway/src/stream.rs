//! The gRPC face of the event streams (`edge::stream`, shared with the web chat's WebSocket): each
//! event as an `inbox.v1.Event`, each early end as a status that names the cursor to resume from.

use edge::stream::{EndReason, Events, StreamEnd};
use futures::StreamExt as _;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Status};

use crate::manager::EventStream;
use crate::{convert, status};

pub fn grpc(events: Events) -> EventStream {
    Box::pin(ReceiverStream::new(events).map(|item| item.map(convert::event).map_err(end_status)))
}

fn end_status(end: StreamEnd) -> Status {
    let (code, why) = match end.reason {
        EndReason::TokenExpired => (
            Code::Unauthenticated,
            "token expired: reconnect with a fresh token",
        ),
        EndReason::TooSlow => (Code::ResourceExhausted, "consumer fell too far behind"),
        EndReason::ShuttingDown => (Code::Unavailable, "gateway shutting down"),
        EndReason::Store(e) => return status::store(e),
    };
    status::resume_from(code, end.cursor, why)
}

/// A stream status that tells the caller where to resume, if it is one.
pub fn resume_cursor(s: &Status) -> Option<i64> {
    use tonic_types::StatusExt;
    s.get_details_error_info()?
        .metadata
        .get("resume_after_cursor")?
        .parse()
        .ok()
}
