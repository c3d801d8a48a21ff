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

/// The built-in card rule, checked in the inbound transaction as a spec's check would be.
pub struct CardCheck(tickets::screening::Rules);

impl CardCheck {
    pub fn new() -> anyhow::Result<Self> {
        Ok(Self(tickets::screening::Rules::compile(&[
            tickets::screening::AfcRule {
                name: "card".into(),
                check: tickets::screening::Check::CardNumber,
            },
        ])?))
    }
}

impl tickets::inbound::MessageCheck for CardCheck {
    fn version(&self) -> &str {
        "test"
    }
    fn verdict(&self, body: &str) -> tickets::Verdict {
        self.0.check(body)
    }
    fn verdict_after(&self, previous: Option<&str>, body: &str) -> tickets::Verdict {
        self.0.check_after(previous, body)
    }
    fn classify(&self, _: &str) -> tickets::TicketClassification {
        tickets::TicketClassification::default()
    }
    fn blocked_warning(&self) -> &str {
        "blocked"
    }
}
