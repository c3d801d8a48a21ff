//! The client side of ticket workflows, for the inbound consumer and the gateway: connect, deliver a
//! message (signal-with-start), resolve.

use platform::settings::ExposeSecret;
use platform::settings::temporal::TemporalSettings;
use temporalio_client::{
    Client, ClientOptions, ClientTlsOptions, Connection, ConnectionOptions, TlsOptions, Url,
    WorkflowSignalOptions, WorkflowStartOptions,
};
use uuid::Uuid;

use crate::ticket::{
    ResolveRequest, TicketInput, TicketOpened, TicketSignal, TicketWorkflow, workflow_id,
};
use spec::TicketSpec;

#[derive(Debug, thiserror::Error)]
pub enum TemporalError {
    #[error("temporal url {0:?}: {1}")]
    Url(String, String),
    #[error("connecting to temporal at {0}: {1}")]
    Connect(String, String),
    #[error("temporal: {0}")]
    Call(String),
    /// The server refused the request itself (e.g. a workflow id longer than it allows): the
    /// same call can never succeed.
    #[error("temporal refused: {0}")]
    Rejected(String),
}

impl TemporalError {
    /// A start (or signal-with-start) error: refused for good, or worth retrying.
    fn of_start(e: temporalio_client::errors::WorkflowStartError) -> Self {
        use temporalio_client::errors::WorkflowStartError as E;
        match &e {
            E::PayloadConversion(_) => Self::Rejected(e.to_string()),
            E::Rpc(status)
                if matches!(
                    status.code(),
                    tonic::Code::InvalidArgument | tonic::Code::OutOfRange
                ) =>
            {
                Self::Rejected(e.to_string())
            }
            _ => Self::Call(e.to_string()),
        }
    }
}

/// Connects to the Temporal frontend of `s`: plain for `http://`, TLS for `https://` (with the
/// CA file, server name and client certificate when set), with the API key when set.
pub async fn connect(s: &TemporalSettings, identity: &str) -> Result<Client, TemporalError> {
    let url = s.url.as_str();
    let target = Url::parse(url).map_err(|e| TemporalError::Url(url.into(), e.to_string()))?;
    let read = |p: &std::path::Path| {
        std::fs::read(p)
            .map_err(|e| TemporalError::Url(url.into(), format!("reading {}: {e}", p.display())))
    };
    let tls = if target.scheme() == "https" {
        let client = match &s.client_cert {
            Some((cert, key)) => Some(
                ClientTlsOptions::builder()
                    .client_cert(read(cert)?)
                    .client_private_key(read(key)?)
                    .build(),
            ),
            None => None,
        };
        let ca = s.ca_file.as_deref().map(read).transpose()?;
        Some(
            TlsOptions::builder()
                .maybe_server_root_ca_cert(ca)
                .maybe_domain(s.server_name.clone())
                .maybe_client_tls_options(client)
                .build(),
        )
    } else {
        None
    };
    let opts = ConnectionOptions::new(target)
        .identity(identity.to_owned())
        .maybe_tls_options(tls)
        .maybe_api_key(s.api_key.as_ref().map(|k| k.expose_secret().to_owned()))
        .build();
    let connection = Connection::connect(opts)
        .await
        .map_err(|e| TemporalError::Connect(url.into(), e.to_string()))?;
    Client::new(connection, ClientOptions::new(s.namespace.clone()).build())
        .map_err(|e| TemporalError::Connect(url.into(), e.to_string()))
}

/// A readiness probe of the Temporal frontend (`GetSystemInfo`).
pub fn probe(client: &Client) -> platform::ops::Probe {
    let client = client.clone();
    std::sync::Arc::new(move || {
        let client = client.clone();
        Box::pin(async move {
            use temporalio_common::protos::temporal::api::workflowservice::v1::GetSystemInfoRequest;
            client
                .connection()
                .workflow_service()
                .get_system_info(tonic::Request::new(GetSystemInfoRequest::default()))
                .await
                .map(|_| ())
                .map_err(|e| e.message().to_owned())
        })
    })
}

/// `inbox_temporal_calls_total{op}`: every call to the Temporal frontend, answered or not (its
/// rate over `inbox_messages_accepted_total`'s is what one client message costs Temporal).
fn called(op: &'static str) {
    metrics::counter!("inbox_temporal_calls_total", "op" => op).increment(1);
}

/// Sends ticket workflows their signals.
#[derive(Clone)]
pub struct Tickets {
    pub client: Client,
    pub task_queue: String,
}

impl Tickets {
    /// Wakes the client's open ticket, or starts one (`proposed_ticket_id`) if none is open.
    pub async fn message_arrived(
        &self,
        client_id: &str,
        message_id: Uuid,
        proposed_ticket_id: Uuid,
        spec: &TicketSpec,
        history_limit: Option<u32>,
    ) -> Result<String, TemporalError> {
        let input = TicketInput {
            ticket_id: proposed_ticket_id,
            client_id: client_id.to_owned(),
            spec: spec.clone(),
            carried_messages: false,
            state: None,
            history_limit,
            store_checks: false,
            announced: None,
        };
        let opts =
            WorkflowStartOptions::new(self.task_queue.clone(), workflow_id(client_id)).build();
        called("signal_with_start_message");
        let handle = self
            .client
            .signal_with_start_workflow(
                TicketWorkflow::run,
                input,
                TicketWorkflow::message_arrived,
                message_id,
                opts,
            )
            .await
            .map_err(TemporalError::of_start)?;
        Ok(handle.run_id().unwrap_or_default().to_owned())
    }

    /// Tells the client's ticket that an AFC verdict was recorded; starts a ticket
    /// (`proposed_ticket_id`) if none is open, as a new message would, so a late verdict for a
    /// message held when its ticket closed is still applied.
    pub async fn afc_verdict(
        &self,
        client_id: &str,
        message_id: Uuid,
        proposed_ticket_id: Uuid,
        spec: &TicketSpec,
        history_limit: Option<u32>,
    ) -> Result<(), TemporalError> {
        let input = TicketInput {
            ticket_id: proposed_ticket_id,
            client_id: client_id.to_owned(),
            spec: spec.clone(),
            carried_messages: false,
            state: None,
            history_limit,
            store_checks: false,
            announced: None,
        };
        let opts =
            WorkflowStartOptions::new(self.task_queue.clone(), workflow_id(client_id)).build();
        called("signal_with_start_verdict");
        self.client
            .signal_with_start_workflow(
                TicketWorkflow::run,
                input,
                TicketWorkflow::afc_verdict,
                message_id,
                opts,
            )
            .await
            .map_err(TemporalError::of_start)?;
        Ok(())
    }

    /// Tells the client's ticket workflow that the store opened or queued `ticket_id` (the
    /// `ticket_opened` / `ticket_queued` events), starting it if it is not running: the store
    /// runs the ticket's message path, the workflow its lifecycle.
    pub async fn opened(
        &self,
        client_id: &str,
        opened: TicketOpened,
        spec: &TicketSpec,
        history_limit: Option<u32>,
    ) -> Result<(), TemporalError> {
        let input = TicketInput {
            ticket_id: opened.ticket_id,
            client_id: client_id.to_owned(),
            spec: spec.clone(),
            carried_messages: false,
            state: None,
            history_limit,
            store_checks: true,
            announced: Some(opened.clone()),
        };
        let opts =
            WorkflowStartOptions::new(self.task_queue.clone(), workflow_id(client_id)).build();
        called(if opened.queued {
            "signal_with_start_queued"
        } else {
            "signal_with_start_opened"
        });
        self.client
            .signal_with_start_workflow(
                TicketWorkflow::run,
                input,
                TicketWorkflow::opened,
                opened,
                opts,
            )
            .await
            .map_err(TemporalError::of_start)?;
        Ok(())
    }

    /// Tells the client's ticket workflow that a manager took `ticket_id`.
    pub async fn assigned(
        &self,
        client_id: &str,
        ticket_id: Uuid,
        manager_id: &str,
    ) -> Result<(), TemporalError> {
        self.signal_ticket(client_id, ticket_id, manager_id, true)
            .await
    }

    /// Tells the client's ticket workflow that its manager replied.
    pub async fn manager_replied(
        &self,
        client_id: &str,
        ticket_id: Uuid,
        manager_id: &str,
    ) -> Result<(), TemporalError> {
        self.signal_ticket(client_id, ticket_id, manager_id, false)
            .await
    }

    async fn signal_ticket(
        &self,
        client_id: &str,
        ticket_id: Uuid,
        manager_id: &str,
        assigned: bool,
    ) -> Result<(), TemporalError> {
        let handle = self
            .client
            .get_workflow_handle::<TicketWorkflow>(workflow_id(client_id));
        let s = TicketSignal {
            ticket_id,
            manager_id: manager_id.to_owned(),
        };
        let opts = WorkflowSignalOptions::default();
        called(if assigned {
            "signal_assigned"
        } else {
            "signal_manager_replied"
        });
        let res = if assigned {
            handle.signal(TicketWorkflow::assigned, s, opts).await
        } else {
            handle
                .signal(TicketWorkflow::manager_replied, s, opts)
                .await
        };
        res.map_err(|e| TemporalError::Call(e.to_string()))
    }

    /// Asks the client's ticket workflow to close `ticket_id` on the manager's behalf.
    pub async fn resolve(
        &self,
        client_id: &str,
        ticket_id: Uuid,
        manager_id: &str,
    ) -> Result<(), TemporalError> {
        called("signal_resolve");
        self.client
            .get_workflow_handle::<TicketWorkflow>(workflow_id(client_id))
            .signal(
                TicketWorkflow::resolve,
                ResolveRequest {
                    ticket_id,
                    manager_id: manager_id.to_owned(),
                },
                WorkflowSignalOptions::default(),
            )
            .await
            .map_err(|e| TemporalError::Call(e.to_string()))?;
        Ok(())
    }
}
