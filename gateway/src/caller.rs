//! Who is calling: the bearer token of a request, verified, with the role the service needs.

use platform::auth::Verifier;
use tickets::{Caller, Role};
use tonic::{Request, Status};

use crate::status;

/// The verified caller of `req`; `UNAUTHENTICATED` without a valid token, `PERMISSION_DENIED`
/// without `role`.
pub async fn authenticate<T>(
    verifier: &Verifier,
    req: &Request<T>,
    role: Role,
) -> Result<Caller, Status> {
    let header = req
        .metadata()
        .get("authorization")
        .map(|v| {
            v.to_str()
                .map_err(|_| Status::unauthenticated("malformed authorization header"))
        })
        .transpose()?;
    let caller = verifier
        .verify_header_async(header)
        .await
        .map_err(status::auth)?;
    platform::auth::require(&caller, role).map_err(status::auth)?;
    Ok(caller)
}
