//! Domain values tests start from, built one way.

use tickets::{Caller, NewClientMessage, Role};
use uuid::Uuid;

/// A manager as a verified token names them: display name "Manager <id>".
pub fn manager(id: &str) -> Caller {
    Caller {
        user_id: id.into(),
        roles: vec![Role::Manager],
        display_name: format!("Manager {id}"),
    }
}

/// A web-chat message of `client`, as communication publishes it, with an external id of its
/// own (so two calls are two messages).
pub fn web_message(client: &str, body: &str) -> NewClientMessage {
    NewClientMessage::from_source(
        "web",
        format!("{client}/{}", Uuid::new_v4()),
        client,
        client,
        body,
    )
}
