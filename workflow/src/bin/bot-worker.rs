//! `bot-worker`: an example of the bank's bot worker over Kafka (`bot.commands` in,
//! `bot.replies` out) for `make run` and tests. It answers /status, /hours, /rates, /help, and
//! hands /manager over to a manager.

use std::time::Duration;

use clap::Parser;
use workflow::bot_worker::BotWorker;
use workflow::bots::BotTopics;

#[derive(Parser)]
#[command(about = "Example bot worker: answers client commands from bot.commands on bot.replies")]
struct Args {
    #[arg(long, env = "INBOX_TOPIC_PREFIX", default_value = "")]
    topic_prefix: String,
    /// Wait this long before answering each command (e.g. 2s, 500ms): a slow bot.
    #[arg(long, default_value = "0ms", value_parser = parse_delay)]
    delay: Duration,
}

fn parse_delay(s: &str) -> Result<Duration, String> {
    if matches!(s.trim(), "0" | "0ms" | "0s") {
        return Ok(Duration::ZERO);
    }
    spec::parse_duration(s)
        .map(|m| Duration::from_millis(m.0))
        .ok_or_else(|| format!("expected a duration like 500ms or 2s, got {s:?}"))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    platform::telemetry::init();
    let args = Args::parse();
    let env = platform::settings::Env::from_process(&[
        workflow::settings::BOTS,
        platform::settings::common::ALL,
    ])?;
    let worker = BotWorker {
        kafka: platform::kafka::KafkaSettings::from_env(&env)?,
        topics: BotTopics::from_env(&env, &args.topic_prefix),
        group: format!("{}bot-worker", args.topic_prefix),
        delay: args.delay,
    };
    worker.run(platform::shutdown::on_signal()).await?;
    Ok(())
}
