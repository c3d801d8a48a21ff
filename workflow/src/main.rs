use clap::Parser;
use platform::settings::Start;

#[derive(Parser)]
#[command(about = "The ticket workflow service: Temporal worker, inbound consumer, outbox relay")]
enum Cmd {
    /// Run the service (the default; `--print-config` lists every setting and exits).
    Run,
    /// Check a workflows.yaml without starting anything.
    Validate { file: std::path::PathBuf },
    /// Apply this release's database migrations and exit (the Kubernetes migration Job); the
    /// services apply them at start too, so running it twice, or late, changes nothing.
    Migrate,
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
        Cmd::Migrate => {
            let Some(settings) = settings()? else {
                return Ok(());
            };
            let version = workflow::migrate(&settings).await?;
            println!("database migrated: schema version {version}");
            Ok(())
        }
        Cmd::Run => {
            let Some(settings) = settings()? else {
                return Ok(());
            };
            let shutdown =
                platform::shutdown::on_signal_within(Some(settings.common.shutdown_deadline));
            workflow::run(settings, shutdown).await
        }
    }
}

/// The service's settings from the environment; None when `--print-config` printed them.
fn settings() -> anyhow::Result<Option<workflow::Settings>> {
    Ok(
        match platform::settings::load(
            "workflow",
            &workflow::settings::declared(),
            workflow::Settings::from_env,
            workflow::Settings::refusals,
        )? {
            Start::Run(s) => Some(s),
            Start::Printed => None,
        },
    )
}
