//! The one mapping from errors to gRPC statuses in the gateway.

use edge::auth::AuthError;
use tickets::StoreError;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// `INVALID_ARGUMENT` with a field violation (rich error details).
pub fn invalid(field: &str, description: &str) -> Status {
    Status::with_error_details(
        Code::InvalidArgument,
        format!("{field}: {description}"),
        ErrorDetails::with_bad_request_violation(field, description),
    )
}

pub fn auth(e: AuthError) -> Status {
    match e {
        AuthError::Forbidden(_) => Status::permission_denied(e.to_string()),
        AuthError::BadClaim { claim, ref reason } => invalid(&format!("token.{claim}"), reason),
        AuthError::Unavailable(_) | AuthError::Setup(_) => {
            tracing::error!(error = %e, "token keys unavailable");
            Status::unavailable("cannot verify tokens now, retry")
        }
        _ => Status::unauthenticated(e.to_string()),
    }
}

/// Not-your-ticket and no-such-ticket are both `NOT_FOUND`: existence must not leak.
pub fn store(e: StoreError) -> Status {
    match e {
        StoreError::TicketNotFound => Status::not_found("ticket not found"),
        StoreError::TicketClosed => Status::failed_precondition("ticket is closed"),
        StoreError::AtCapacity { .. } => Status::failed_precondition(e.to_string()),
        StoreError::OtherTicketOpen(_) => Status::aborted(e.to_string()),
        StoreError::ManagerNotReady(_) => Status::failed_precondition(e.to_string()),
        StoreError::AttachmentNotFound => invalid(
            "attachment_ids",
            "names a file that is not an upload of yours for this ticket, or that was sent already",
        ),
        e => {
            tracing::error!(error = %e, "store failure");
            Status::unavailable("storage unavailable, retry")
        }
    }
}

/// A stream that ends before the caller is done: resume with `after_cursor = cursor`. The cursor is
/// in the message and in an `ErrorInfo` detail (`metadata.resume_after_cursor`).
pub fn resume_from(code: Code, cursor: i64, why: &str) -> Status {
    Status::with_error_details(
        code,
        format!("{why}; resume with after_cursor={cursor}"),
        ErrorDetails::with_error_info(
            "RESUME_FROM_CURSOR",
            "inbox.v1",
            [("resume_after_cursor".to_owned(), cursor.to_string())],
        ),
    )
}

/// `RESOURCE_EXHAUSTED` with a `RetryInfo` detail: the caller is over its request rate.
pub fn rate_limited(retry_after_secs: u64) -> Status {
    Status::with_error_details(
        Code::ResourceExhausted,
        format!("too many requests; retry after {retry_after_secs} s"),
        ErrorDetails::with_retry_info(Some(std::time::Duration::from_secs(retry_after_secs))),
    )
}

/// `RESOURCE_EXHAUSTED`: the caller holds as many event streams as it may.
pub fn too_many_streams(e: edge::stream::TooManyStreams) -> Status {
    Status::with_error_details(
        Code::ResourceExhausted,
        e.to_string(),
        ErrorDetails::with_retry_info(Some(std::time::Duration::from_secs(10))),
    )
}

/// An idempotency key reused for a different request.
pub fn key_reused(field: &str) -> Status {
    Status::already_exists(format!("{field} was already used for a different message"))
}

pub fn kafka(e: rdkafka::error::KafkaError) -> Status {
    tracing::error!(error = %e, "kafka failure");
    Status::unavailable("message bus unavailable, retry")
}

/// A file refused (`INVALID_ARGUMENT` on `field`), or the stores failing (`UNAVAILABLE`).
pub fn file(field: &str, e: edge::files::FileError) -> Status {
    match e {
        edge::files::FileError::Db(e) => store(e),
        e if e.is_refusal() => invalid(field, &e.to_string()),
        e => {
            tracing::error!(error = %e, "object store failure");
            Status::unavailable("file storage unavailable, retry")
        }
    }
}
