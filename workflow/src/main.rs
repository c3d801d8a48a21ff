use anyhow::Context;
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
    /// Dry run: replay the tickets opened in a period through a changed spec and print what
    /// would differ from what happened (queues, priorities, escalations, SLA breaches,
    /// auto-closes). Reads the database (INBOX_DATABASE_URL) only.
    Simulate {
        /// The changed workflows.yaml.
        #[arg(long)]
        spec: std::path::PathBuf,
        /// Start of the period: a duration back from now (`7d`) or an RFC 3339 instant.
        #[arg(long, default_value = "7d")]
        since: String,
        /// End of the period (default: now), the same forms.
        #[arg(long)]
        until: Option<String>,
        /// Print JSON instead of the table.
        #[arg(long)]
        json: bool,
        /// Example ticket ids per kind of difference.
        #[arg(long, default_value_t = 5)]
        examples: usize,
        /// Read at most this many tickets (the oldest of the period; the output says when cut).
        #[arg(long, default_value_t = tickets::simulation::DEFAULT_MAX_TICKETS)]
        max_tickets: usize,
    },
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
        Cmd::Simulate {
            spec,
            since,
            until,
            json,
            examples,
            max_tickets,
        } => {
            let new = match spec::Spec::load(&spec) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("{e}");
                    std::process::exit(1);
                }
            };
            let Some(settings) = settings()? else {
                return Ok(());
            };
            let now = chrono::Utc::now();
            let end = match &until {
                Some(u) => workflow::simulate::instant(u, now)?,
                None => now,
            };
            let start = workflow::simulate::instant(&since, now)?;
            let period = tickets::simulation::SimulationPeriod::new(start, end)?;
            let db = &settings.common.database;
            let store = tickets::PgStore::connect_with(
                &db.url,
                db.password(),
                1,
                &format!("inbox-simulate {}", std::process::id()),
            )
            .await
            .context("connecting to PostgreSQL (INBOX_DATABASE_URL)")?;
            let run = spec::simulate::dry_run_recorded(
                &store,
                &new.ticket,
                &period,
                max_tickets.max(1),
                examples,
            )
            .await
            .context("reading the period's recorded tickets")?;
            if json {
                let out = workflow::simulate::Output {
                    start,
                    end,
                    spec_version: &new.ticket.version,
                    run: &run,
                };
                println!("{}", serde_json::to_string_pretty(&out)?);
            } else {
                print!("{}", workflow::simulate::render(&period, &run));
            }
            Ok(())
        }
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
