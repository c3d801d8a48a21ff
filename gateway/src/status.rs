//! The one mapping from errors to gRPC statuses in the gateway.

use platform::auth::AuthError;
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
        e => {
            tracing::error!(error = %e, "store failure");
            Status::unavailable("storage unavailable, retry")
        }
    }
}

pub fn temporal(e: workflow::client::TemporalError) -> Status {
    tracing::error!(error = %e, "temporal failure");
    Status::unavailable("workflow engine unavailable, retry")
}
