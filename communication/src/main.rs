#[tokio::main]
async fn main() -> anyhow::Result<()> {
    platform::telemetry::init();
    let shutdown = platform::shutdown::on_signal();
    let app =
        communication::Application::build(communication::Settings::from_env()?, shutdown.clone())
            .await?;
    app.serve(shutdown).await
}
