#[tokio::main]
async fn main() -> anyhow::Result<()> {
    platform::telemetry::init();
    let shutdown = platform::shutdown::on_signal();
    let app = gateway::Application::build(gateway::Settings::from_env()).await?;
    app.serve(shutdown).await
}
