//! `afc-emulator`: plays the bank's AFC system over Kafka for `make run` and manual testing.
//! On first run it generates an RSA key pair in `--key-dir`; point the workflow service's
//! `INBOX_AFC_PUBLIC_KEY` at the public PEM it prints.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use tickets::screening::{AfcRule, Check, Rules};
use workflow::afc_emulator::Emulator;
use workflow::afc_kafka::{AES_KEY_FILE, AfcTopics, Cipher, dev_aes_key, dev_key_pair};

#[derive(Parser)]
#[command(about = "Emulates the bank's AFC system: afc.msgs in, RS256-signed verdicts out")]
struct Args {
    #[arg(long, env = "INBOX_TOPIC_PREFIX", default_value = "")]
    topic_prefix: String,
    /// Where the dev signing key pair lives (generated if missing; never commit it).
    #[arg(long, env = "INBOX_AFC_KEY_DIR", default_value = ".dev/afc")]
    key_dir: PathBuf,
    /// Regexes that make a message suspicious (repeatable), besides card numbers.
    #[arg(long = "block-pattern", default_values_t = [String::from(r"(?i)\b(cvv|cvc|one[- ]time password)\b")])]
    block_patterns: Vec<String>,
    /// Do not flag Luhn-valid card numbers.
    #[arg(long)]
    no_card_numbers: bool,
    /// Wait this long before answering each message (e.g. 2s, 500ms).
    #[arg(long, default_value = "0ms", value_parser = parse_delay)]
    delay: Duration,
    /// Fraction of checks that fail and are retried (0 to 1).
    #[arg(long, default_value_t = 0.0)]
    error_rate: f64,
    /// Only make sure the dev keys exist in `--key-dir` (RSA pair and AES key), print their
    /// paths, and exit: `make run` does this before starting the workflow service.
    #[arg(long)]
    init_keys: bool,
}

fn parse_delay(s: &str) -> Result<Duration, String> {
    if s.trim() == "0" || s.trim() == "0ms" || s.trim() == "0s" {
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
    anyhow::ensure!(
        (0.0..=1.0).contains(&args.error_rate),
        "--error-rate must be between 0 and 1"
    );
    let mut rules = Vec::new();
    if !args.no_card_numbers {
        rules.push(AfcRule {
            name: "card_number".into(),
            check: Check::CardNumber,
        });
    }
    for (i, p) in args.block_patterns.iter().enumerate() {
        rules.push(AfcRule {
            name: format!("pattern_{i}"),
            check: Check::Pattern(p.clone()),
        });
    }
    let (signing_key, public_path) = dev_key_pair(&args.key_dir)?;
    if args.init_keys {
        dev_aes_key(&args.key_dir)?;
        println!(
            "INBOX_AFC_PUBLIC_KEY={}\nINBOX_AFC_KEY_FILE={}",
            public_path.display(),
            args.key_dir.join(AES_KEY_FILE).display()
        );
        return Ok(());
    }
    tracing::info!(public_key = %public_path.display(), "verdicts are signed with this key pair");
    let env = platform::settings::Env::from_process(&[
        workflow::settings::AFC,
        workflow::settings::EMULATOR,
        platform::settings::common::ALL,
    ])?;
    let cipher = Cipher::from_env(&env)?;
    let emulator = Emulator {
        kafka: platform::kafka::KafkaSettings::from_env(&env)?,
        topics: AfcTopics::from_env(&env, &args.topic_prefix),
        group: format!("{}afc-emulator", args.topic_prefix),
        cipher,
        signing_key,
        rules: Rules::compile(&rules)?,
        delay: args.delay,
        error_rate: args.error_rate,
    };
    emulator.run(platform::shutdown::on_signal()).await?;
    Ok(())
}
