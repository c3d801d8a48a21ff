use clap::Parser;

#[derive(Parser)]
#[command(about = "The ticket workflow service: Temporal worker, inbound consumer, outbox relay")]
enum Cmd {
    /// Run the service (the default).
    Run,
    /// Check a workflows.yaml without starting anything.
    Validate { file: std::path::PathBuf },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    platform::telemetry::init();
    let cmd = if std::env::args().len() > 1 {
        Cmd::parse()
    } else {
        Cmd::Run
    };
    match cmd {
        Cmd::Validate { file } => match workflow::spec::Spec::load(&file) {
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
            let shutdown = platform::shutdown::on_signal();
            workflow::run(workflow::Settings::from_env(), shutdown).await
        }
    }
}
