use communication::settings::{self, Settings};
use platform::settings::Start;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _telemetry = platform::telemetry::init_service("communication")?;
    let settings = match platform::settings::load(
        "communication",
        &settings::declared(),
        Settings::from_env,
        Settings::refusals,
    )? {
        Start::Run(s) => s,
        Start::Printed => return Ok(()),
    };
    let shutdown = platform::shutdown::on_signal_within(Some(settings.common.shutdown_deadline));
    let app = communication::Application::build(settings, shutdown.clone()).await?;
    app.serve(shutdown).await
}
