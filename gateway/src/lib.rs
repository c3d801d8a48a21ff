//! The gateway: the tonic gRPC API over ticket and chat state (package `inbox.v1`) for managers'
//! consoles and other gRPC clients, with the standard health service and server reflection.
//! Reads go through the store's visibility rules; lifecycle actions go to the ticket workflows.

pub mod manager;
pub mod status;

use std::net::SocketAddr;

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
        let managers = manager::Managers {
            store,
            tickets: workflow::client::Tickets {
                client,
                task_queue: settings.task_queue.clone(),
            },
            verifier: settings.common.verifier(),
            default_capacity: spec.capacity,
        };
        let listener = TcpListener::bind(&settings.grpc_addr)
            .await
            .with_context(|| format!("binding {}", settings.grpc_addr))?;
        let addr = listener.local_addr()?;
        Ok(Self {
            listener,
            managers,
            addr,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub async fn serve(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let (health_reporter, health) = tonic_health::server::health_reporter();
        health_reporter
            .set_serving::<proto::v1::manager_service_server::ManagerServiceServer<manager::Managers>>()
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
                    .set_not_serving::<proto::v1::manager_service_server::ManagerServiceServer<manager::Managers>>()
                    .await;
            }
        };
        tonic::transport::Server::builder()
            .add_service(health)
            .add_service(reflection)
            .add_service(
                proto::v1::manager_service_server::ManagerServiceServer::new(self.managers),
            )
            .serve_with_incoming_shutdown(TcpListenerStream::new(self.listener), stop)
            .await?;
        Ok(())
    }
}
