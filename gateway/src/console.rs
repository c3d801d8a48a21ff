//! The console listener: the built web console (managers and supervisors) and the gateway's
//! gRPC API as gRPC-Web (`tonic-web`) for it, on one HTTP/1.1 origin, so the browser needs no
//! proxy and no second, JSON API. In the dev profile it also issues dev tokens (`POST
//! /dev/token`) for the console's and the widget demo's login page; production has no such route.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::post;
use axum::{Json, Router};
use proto::v1::admin_service_server::AdminServiceServer;
use proto::v1::client_service_server::ClientServiceServer;
use proto::v1::manager_service_server::ManagerServiceServer;
use serde::Deserialize;
use serde_json::json;
use tickets::Role;
use tonic_web::GrpcWebLayer;
use tower::Layer as _;

use crate::MAX_REQUEST_BYTES;

/// What signs dev tokens: the dev profile's shared secret and issuer.
#[derive(Clone)]
pub struct DevTokens {
    pub secret: Vec<u8>,
    pub issuer: String,
}

impl std::fmt::Debug for DevTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevTokens")
            .field("secret", &"<secret>")
            .field("issuer", &self.issuer)
            .finish()
    }
}

/// How the console signs in, as its `/config.json` tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Login {
    /// The dev login (`POST /dev/token`).
    Dev,
    /// Authorization code + PKCE at the identity provider `issuer`, as client `client_id`.
    Oidc { issuer: String, client_id: String },
    /// Nothing to sign in with: production without `INBOX_CONSOLE_OIDC_CLIENT_ID`.
    None,
}

impl Login {
    pub fn of(
        auth: &platform::settings::AuthSettings,
        dev_tokens: bool,
        client_id: Option<String>,
    ) -> Self {
        match (auth, client_id) {
            (platform::settings::AuthSettings::Jwks(j), Some(client_id)) => Self::Oidc {
                issuer: j.issuer.clone(),
                client_id,
            },
            _ if dev_tokens => Self::Dev,
            _ => Self::None,
        }
    }

    fn config(&self) -> serde_json::Value {
        match self {
            Self::Dev => json!({ "login": "dev" }),
            Self::Oidc { issuer, client_id } => json!({
                "login": "oidc",
                "issuer": issuer,
                "client_id": client_id,
                "scope": "openid profile offline_access",
            }),
            Self::None => json!({ "login": "none" }),
        }
    }
}

/// How long a dev token is good for: a working day.
const DEV_TOKEN_SECS: i64 = 8 * 3600;

#[derive(Deserialize)]
struct TokenRequest {
    user: String,
    role: String,
    #[serde(default)]
    name: Option<String>,
}

async fn dev_token(
    State(tokens): State<DevTokens>,
    body: Result<Json<TokenRequest>, axum::extract::rejection::JsonRejection>,
) -> axum::response::Response {
    let bad = |field: &str, why: &str| {
        (
            StatusCode::BAD_REQUEST,
            Json(json!({ "error": { "field": field, "message": why } })),
        )
            .into_response()
    };
    let Ok(Json(req)) = body else {
        return bad("", "expected JSON {\"user\", \"role\", \"name\"?}");
    };
    let user = req.user.trim();
    if user.is_empty()
        || user.len() > edge::auth::MAX_SUBJECT_BYTES
        || user.contains(char::is_control)
    {
        return bad("user", "a user id of 1 to 255 bytes, no control characters");
    }
    let Some(role) = Role::parse(&req.role) else {
        return bad("role", "one of client, manager, admin");
    };
    // An admin supervises and may also take tickets, as the dev CLI's admin does.
    let roles: &[Role] = match role {
        Role::Admin => &[Role::Admin, Role::Manager],
        Role::Manager => &[Role::Manager],
        Role::Client => &[Role::Client],
    };
    let name = req.name.as_deref().map(str::trim).filter(|n| !n.is_empty());
    match edge::auth::issue_dev_token(
        &tokens.secret,
        &tokens.issuer,
        user,
        name,
        roles,
        DEV_TOKEN_SECS,
    ) {
        Ok(token) => Json(json!({ "token": token })).into_response(),
        Err(e) => bad("name", &e.to_string()),
    }
}

/// The console origin's routes: gRPC-Web for every service, dev tokens if given, the built
/// console for everything else.
pub fn router(
    managers: crate::manager::Managers,
    clients: crate::client::Clients,
    admins: crate::admin::Admins,
    web: &edge::web::WebSettings,
    dev_tokens: Option<DevTokens>,
    login: Login,
) -> Router {
    let grpc_web = GrpcWebLayer::new();
    let upload_bytes = crate::max_upload_request_bytes(&managers.files);
    let mut router = Router::new()
        .route_service(
            "/inbox.v1.ManagerService/{*method}",
            grpc_web
                .layer(ManagerServiceServer::new(managers).max_decoding_message_size(upload_bytes)),
        )
        .route_service(
            "/inbox.v1.ClientService/{*method}",
            grpc_web
                .layer(ClientServiceServer::new(clients).max_decoding_message_size(upload_bytes)),
        )
        .route_service(
            "/inbox.v1.AdminService/{*method}",
            grpc_web.layer(
                AdminServiceServer::new(admins).max_decoding_message_size(MAX_REQUEST_BYTES),
            ),
        );
    let config = login.config();
    router = router.route(
        "/config.json",
        axum::routing::get(move || {
            let config = config.clone();
            async move { Json(config) }
        }),
    );
    router = match dev_tokens {
        Some(tokens) => router.route("/dev/token", post(dev_token).with_state(tokens)),
        // Not the console's files either: a plain "no such thing" outside dev.
        None => router.route(
            "/dev/token",
            axum::routing::any(|| async {
                (
                    StatusCode::NOT_FOUND,
                    Json(json!({ "error": { "message": "dev login is off outside the dev profile" } })),
                )
            }),
        ),
    };
    if web.has_app("console") {
        router = router.fallback_service(web.app("console"));
    } else {
        tracing::info!(root = %web.root.display(), "no built console under the web root: only gRPC-Web is served");
    }
    router
        .layer(axum::extract::DefaultBodyLimit::max(MAX_REQUEST_BYTES))
        .layer(web.cors())
}
