use gateway::Settings;
use platform::settings::Start;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _telemetry = platform::telemetry::init_service("gateway")?;
    let settings = match platform::settings::load(
        "gateway",
        &gateway::declared(),
        Settings::from_env,
        Settings::refusals,
    )? {
        Start::Run(s) => s,
        Start::Printed => return Ok(()),
    };
    let shutdown = platform::shutdown::on_signal_within(Some(settings.common.shutdown_deadline));
    let app = gateway::Application::build(settings, shutdown.clone()).await?;
    app.serve(shutdown).await
}
