//! Who is calling: the bearer token of a request, verified, with the role the service needs.

use edge::auth::{Verified, Verifier};
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
    Ok(authenticate_token(verifier, req, role).await?.caller)
}

/// [`authenticate`] with the token's expiry, for streams that must end when it expires.
pub async fn authenticate_token<T>(
    verifier: &Verifier,
    req: &Request<T>,
    role: Role,
) -> Result<Verified, Status> {
    let header = authorization(req)?;
    let token = verifier
        .verify_header_token_async(header)
        .await
        .map_err(status::auth)?;
    edge::auth::require(&token.caller, role).map_err(status::auth)?;
    Ok(token)
}

/// The `authorization` metadata of `req`, if any; `UNAUTHENTICATED` when it is not text.
pub fn authorization<T>(req: &Request<T>) -> Result<Option<&str>, Status> {
    req.metadata()
        .get("authorization")
        .map(|v| {
            v.to_str()
                .map_err(|_| Status::unauthenticated("malformed authorization header"))
        })
        .transpose()
}
