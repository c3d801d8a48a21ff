//! The settings of the workflow service: every `INBOX_*` variable it reads, declared once (see
//! `platform::settings`). `INBOX_SPEC` (declared by the `spec` crate) is also
//! the gateway's.

use std::path::PathBuf;

use platform::settings::{
    Common, Env, ExposeSecret, Kind, Refusals, SecretString, Setting, SettingError, common,
    temporal::{self, TemporalSettings},
};

pub use spec::SPEC_FILE as SPEC;
pub static HISTORY_LIMIT: Setting = Setting::optional(
    "INBOX_HISTORY_LIMIT",
    Kind::Int,
    "ticket workflows continue as new past this many history events (default: the spec's own)",
);
pub static WORKFLOW_CACHE: Setting = Setting::new(
    "INBOX_WORKFLOW_CACHE",
    Kind::Int,
    "3000",
    "ticket workflows the worker keeps in memory (~74 KB each)",
);
pub static SOURCE_WAIT_MS: Setting = Setting::new(
    "INBOX_KAFKA_SOURCE_WAIT_MS",
    Kind::Int,
    "10",
    "`fetch.wait.max.ms` of the inbound and verdict consumers (Apache Kafka: 500)",
);
pub static IDLE_POLL_MS: Setting = Setting::new(
    "INBOX_KAFKA_IDLE_POLL_MS",
    Kind::Int,
    "100",
    "once a consumed topic was quiet for a second, stop fetching it and ask its offsets every this many ms until a record comes (0: always fetch; Apache Kafka: 0)",
);
pub static AFC_KEY: Setting = Setting::optional(
    "INBOX_AFC_KEY",
    Kind::Secret,
    "AES-256-GCM key (64 hex digits) of messages to the AFC system (required in production)",
);
pub static AFC_PUBLIC_KEY: Setting = Setting::optional(
    "INBOX_AFC_PUBLIC_KEY",
    Kind::Text,
    "the AFC system's verdict-signing public key: a PEM or a path (required by the kafka provider)",
);
pub static AFC_MSGS_TOPIC: Setting = Setting::new(
    "INBOX_AFC_MSGS_TOPIC",
    Kind::Text,
    "afc.msgs",
    "topic of messages to the AFC system (after the prefix)",
);
pub static AFC_VERDICTS_TOPIC: Setting = Setting::new(
    "INBOX_AFC_VERDICTS_TOPIC",
    Kind::Text,
    "afc.verdicts",
    "topic of the AFC system's verdicts (after the prefix)",
);
pub static AFC_DLQ_TOPIC: Setting = Setting::new(
    "INBOX_AFC_DLQ_TOPIC",
    Kind::Text,
    "afc.verdicts.dlq",
    "dead letters of verdicts that cannot be trusted (after the prefix)",
);
pub static AFC_KEY_DIR: Setting = Setting::new(
    "INBOX_AFC_KEY_DIR",
    Kind::Path,
    ".dev/afc",
    "`afc-emulator` only: where its dev key pair lives",
);

pub static BOT_COMMANDS_TOPIC: Setting = Setting::new(
    "INBOX_BOT_COMMANDS_TOPIC",
    Kind::Text,
    "bot.commands",
    "topic of client commands to the bank's bot worker (after the prefix)",
);
pub static BOT_REPLIES_TOPIC: Setting = Setting::new(
    "INBOX_BOT_REPLIES_TOPIC",
    Kind::Text,
    "bot.replies",
    "topic of the bot worker's answers (after the prefix)",
);
pub static BOT_DLQ_TOPIC: Setting = Setting::new(
    "INBOX_BOT_DLQ_TOPIC",
    Kind::Text,
    "bot.replies.dlq",
    "dead letters of bot answers that cannot be applied (after the prefix)",
);

/// The bot worker's topics (also read by `bot-worker`).
pub static BOTS: &[&Setting] = &[&BOT_COMMANDS_TOPIC, &BOT_REPLIES_TOPIC, &BOT_DLQ_TOPIC];

/// The AFC provider's topics and keys (also read by `afc-emulator`).
pub static AFC: &[&Setting] = &[
    &AFC_KEY,
    &AFC_PUBLIC_KEY,
    &AFC_MSGS_TOPIC,
    &AFC_VERDICTS_TOPIC,
    &AFC_DLQ_TOPIC,
];

pub static OPS_ADDR: Setting =
    platform::ops::ops_addr_setting("INBOX_WORKFLOW_OPS_ADDR", "127.0.0.1:17250");

static OWN: &[&Setting] = &[
    &SPEC,
    &OPS_ADDR,
    &HISTORY_LIMIT,
    &WORKFLOW_CACHE,
    &SOURCE_WAIT_MS,
    &IDLE_POLL_MS,
];

/// `afc-emulator`'s own.
pub static EMULATOR: &[&Setting] = &[&AFC_KEY_DIR];

/// Every setting of the workflow service, in `--print-config` order.
pub fn declared() -> Vec<&'static [&'static Setting]> {
    vec![
        common::ALL,
        platform::telemetry::SETTINGS,
        temporal::ALL,
        OWN,
        AFC,
        BOTS,
    ]
}

/// Settings of the workflow service.
#[derive(Debug, Clone)]
pub struct Settings {
    pub common: Common,
    pub temporal: TemporalSettings,
    pub spec_path: PathBuf,
    pub ops_addr: String,
    /// Ticket workflows continue as new past this many history events.
    pub history_limit: Option<u32>,
    /// AES-256-GCM key (hex) for messages to the AFC system; unset = clear (dev only).
    pub afc_key: Option<SecretString>,
    /// The AFC system's verdict-signing public key: a PEM or a path to one. Needed by the Kafka
    /// provider; without it no verdict is trusted.
    pub afc_public_key: Option<String>,
    pub afc_topics: crate::afc_kafka::AfcTopics,
    pub bot_topics: crate::bots::BotTopics,
    /// Ticket workflows the worker keeps in memory. A workflow not cached is rebuilt by
    /// replaying its whole history at its next task, so this should cover the open tickets: with
    /// the SDK's default (1,000) and more open tickets than that, messages spread over them
    /// evicted a workflow at nearly every task.
    pub workflow_cache: usize,
    /// How the inbound and verdict consumers fetch.
    pub fetch: crate::source::Fetch,
}

impl Settings {
    pub fn from_env(env: &Env) -> Result<Self, SettingError> {
        let common = Common::from_env(env)?;
        let afc_key = env.secret(&AFC_KEY);
        if let Some(k) = &afc_key {
            crate::afc_kafka::Cipher::from_hex(Some(k.expose_secret()))
                .map_err(|e| env.error(&AFC_KEY, k.expose_secret(), e.to_string()))?;
        }
        Ok(Self {
            afc_topics: crate::afc_kafka::AfcTopics::from_env(env, &common.topic_prefix),
            bot_topics: crate::bots::BotTopics::from_env(env, &common.topic_prefix),
            common,
            temporal: TemporalSettings::from_env(env)?,
            spec_path: env.text(&SPEC).into(),
            ops_addr: env.text(&OPS_ADDR),
            history_limit: env.opt_parse(&HISTORY_LIMIT)?,
            afc_key,
            afc_public_key: env.opt(&AFC_PUBLIC_KEY),
            workflow_cache: env.parse(&WORKFLOW_CACHE)?,
            fetch: crate::source::Fetch {
                wait_ms: env.parse(&SOURCE_WAIT_MS)?,
                idle_poll_ms: env.parse(&IDLE_POLL_MS)?,
                ..Default::default()
            },
        })
    }

    /// What the production profile refuses. A spec that does not load is left to the start
    /// itself, which fails on it with its line and column.
    pub fn refusals(&self, env: &Env) -> Refusals {
        let mut r = Refusals::new();
        self.common.refusals(&mut r);
        platform::telemetry::refusals(env, &mut r);
        self.temporal.refusals(&mut r);
        let kafka_afc =
            spec::Spec::load(&self.spec_path).is_ok_and(|s| !s.ticket.afc_provider.is_builtin());
        r.check(
            kafka_afc && self.afc_key.is_none(),
            "INBOX_AFC_KEY is not set: messages to the AFC system (provider kafka) would go in clear",
        );
        r
    }
}
