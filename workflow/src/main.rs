use clap::Parser;
use platform::settings::Start;

#[derive(Parser)]
#[command(about = "The ticket workflow service: Temporal worker, inbound consumer, outbox relay")]
enum Cmd {
    /// Run the service (the default; `--print-config` lists every setting and exits).
    Run,
    /// Check a workflows.yaml without starting anything.
    Validate { file: std::path::PathBuf },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _telemetry = platform::telemetry::init_service("workflow")?;
    let print_config = std::env::args().skip(1).any(|a| a == "--print-config");
    let cmd = if std::env::args().len() > 1 && !print_config {
        Cmd::parse()
    } else {
        Cmd::Run
    };
    match cmd {
        Cmd::Validate { file } => match spec::Spec::load(&file) {
            Ok(_) => {
                println!("{}: ok", file.display());
                Ok(())
            }
            Err(e) => {
                // The message is the whole answer: file, line, column, path and what is wrong.
                eprintln!("{e}");
                std::process::exit(1);
            }
        },
        Cmd::Run => {
            let settings = match platform::settings::load(
                "workflow",
                &workflow::settings::declared(),
                workflow::Settings::from_env,
                workflow::Settings::refusals,
            )? {
                Start::Run(s) => s,
                Start::Printed => return Ok(()),
            };
            let shutdown =
                platform::shutdown::on_signal_within(Some(settings.common.shutdown_deadline));
            workflow::run(settings, shutdown).await
        }
    }
}
