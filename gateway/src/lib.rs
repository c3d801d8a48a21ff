//! The gateway: the tonic gRPC API over ticket and chat state (package `inbox.v1`) for managers'
//! consoles and other gRPC clients, with the standard health service and server reflection.
//! Reads go through the store's visibility rules; lifecycle actions go to the ticket workflows.

pub mod admin;
pub mod caller;
pub mod client;
pub mod convert;
pub mod manager;
pub mod status;
pub mod stream;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use platform::settings::{self, Common};
use tickets::PgStore;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone)]
pub struct Settings {
    pub common: Common,
    pub grpc_addr: String,
    pub temporal_url: String,
    pub namespace: String,
    pub task_queue: String,
    pub spec_path: std::path::PathBuf,
}

impl Settings {
    pub fn from_env() -> Self {
        let wf = workflow::Settings::from_env();
        Self {
            common: wf.common,
            grpc_addr: settings::var("INBOX_GRPC_ADDR", "127.0.0.1:15051"),
            temporal_url: wf.temporal_url,
            namespace: wf.namespace,
            task_queue: wf.task_queue,
            spec_path: wf.spec_path,
        }
    }
}

pub struct Application {
    listener: TcpListener,
    managers: manager::Managers,
    clients: client::Clients,
    admins: admin::Admins,
    streams: stream::Streams,
    settings: Settings,
    addr: SocketAddr,
}

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let spec = workflow::spec::Spec::load(&settings.spec_path)?;
        let store = PgStore::connect(&settings.common.database_url)
            .await
            .context("connecting to PostgreSQL")?;
        store.migrate().await?;
        let client =
            workflow::client::connect(&settings.temporal_url, &settings.namespace, "inbox-gateway")
                .await?;
        let topics = settings.common.topics();
        platform::kafka::ensure_topics(&settings.common.kafka_brokers, &topics.all())
            .await
            .context("creating Kafka topics")?;
        let verifier = settings.common.verifier();
        let streams = stream::Streams {
            store: store.clone(),
            hub: Arc::new(stream::Hub::default()),
            config: stream::StreamConfig::default(),
            shutdown: CancellationToken::new(),
        };
        let managers = manager::Managers {
            store: store.clone(),
            tickets: workflow::client::Tickets {
                client,
                task_queue: settings.task_queue.clone(),
            },
            verifier: verifier.clone(),
            spec: Arc::new(spec),
            streams: streams.clone(),
        };
        let clients = client::Clients {
            store: store.clone(),
            inbound: platform::kafka::EdgeTopic::new(
                &settings.common.kafka_brokers,
                topics.inbound_messages.clone(),
            )
            .context("creating the Kafka producer")?,
            verifier: verifier.clone(),
            streams: streams.clone(),
        };
        let admins = admin::Admins { store, verifier };
        let listener = TcpListener::bind(&settings.grpc_addr)
            .await
            .with_context(|| format!("binding {}", settings.grpc_addr))?;
        let addr = listener.local_addr()?;
        Ok(Self {
            listener,
            managers,
            clients,
            admins,
            streams,
            settings,
            addr,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub async fn serve(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        use proto::v1::admin_service_server::AdminServiceServer;
        use proto::v1::client_service_server::ClientServiceServer;
        use proto::v1::manager_service_server::ManagerServiceServer;
        // Streams end (telling callers where to resume) as soon as shutdown starts, so the
        // graceful stop does not wait on them.
        let streams_stop = self.streams.shutdown.clone();
        let _listener = stream::listen(
            &self.settings.common.kafka_brokers,
            &self.settings.common.topics().ticket_events,
            self.streams.hub.clone(),
            streams_stop.clone(),
        )
        .context("listening to ticket events")?;
        let (health_reporter, health) = tonic_health::server::health_reporter();
        health_reporter
            .set_serving::<ManagerServiceServer<manager::Managers>>()
            .await;
        health_reporter
            .set_serving::<ClientServiceServer<client::Clients>>()
            .await;
        health_reporter
            .set_serving::<AdminServiceServer<admin::Admins>>()
            .await;
        let reflection = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .build_v1()?;
        tracing::info!(addr = %self.addr, "gateway listening on grpc://{}", self.addr);
        let stop = {
            let shutdown = shutdown.clone();
            async move {
                shutdown.cancelled().await;
                health_reporter
                    .set_not_serving::<ManagerServiceServer<manager::Managers>>()
                    .await;
                health_reporter
                    .set_not_serving::<ClientServiceServer<client::Clients>>()
                    .await;
                health_reporter
                    .set_not_serving::<AdminServiceServer<admin::Admins>>()
                    .await;
                streams_stop.cancel();
            }
        };
        tonic::transport::Server::builder()
            .add_service(health)
            .add_service(reflection)
            .add_service(ManagerServiceServer::new(self.managers))
            .add_service(ClientServiceServer::new(self.clients))
            .add_service(AdminServiceServer::new(self.admins))
            .serve_with_incoming_shutdown(TcpListenerStream::new(self.listener), stop)
            .await?;
        Ok(())
    }
}
