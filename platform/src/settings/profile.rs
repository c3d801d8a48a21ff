//! The production profile's side of the settings: the reasons a start is refused, the dev
//! secrets it refuses, and [`load`], which every service's `main` calls.

use std::fmt;

use super::{Env, Profile, Setting};

/// The reasons a production start is refused, one line each; checked by every service after its
/// settings parse (see [`Refusals::enforce`]).
#[derive(Debug, Default)]
pub struct Refusals(Vec<String>);

impl Refusals {
    pub fn new() -> Self {
        Self::default()
    }

    /// Refuses with `reason` when `insecure` holds.
    pub fn check(&mut self, insecure: bool, reason: impl Into<String>) {
        if insecure {
            self.0.push(reason.into());
        }
    }

    pub fn lines(&self) -> &[String] {
        &self.0
    }

    /// Production: an error with every refusal when there is any. Dev: the warning banner.
    pub fn enforce(self, env: &Env, service: &str) -> Result<(), StartRefused> {
        match env.profile() {
            Profile::Production => {
                let mut lines = self.0;
                for name in env.undeclared() {
                    lines.push(format!(
                        "{name} is not a setting of the engine (a typo would be ignored in silence)"
                    ));
                }
                if lines.is_empty() {
                    Ok(())
                } else {
                    Err(StartRefused { lines })
                }
            }
            Profile::Dev => {
                tracing::warn!(
                    "{service} runs in the DEV profile: dev secrets and plain-text connections are \
                     accepted; never expose it. Set INBOX_PROFILE=production for a deployment"
                );
                if !self.0.is_empty() {
                    tracing::warn!(
                        "in production this configuration would be refused: {}",
                        self.0.join("; ")
                    );
                }
                for name in env.undeclared() {
                    tracing::warn!("{name} is not a setting of the engine: ignored");
                }
                Ok(())
            }
        }
    }
}

/// A production start refused: one line per reason.
#[derive(Debug, thiserror::Error)]
#[error("refusing to start in the production profile:\n  - {}", lines.join("\n  - "))]
pub struct StartRefused {
    pub lines: Vec<String>,
}

/// Secret values committed in this repository (`config/dev.env`, dev defaults): a production
/// start with any of them is refused. A test checks that every secret in `config/dev.env` is here.
pub const DEV_SECRETS: &[&str] = &[
    "dev-secret-change-me-0123456789abcdef",
    "dev-email-ref-secret-change-me-0123456789",
    "5c86a79dee71cc79a9269b14062096bb38712faf976c19983db959489c087268",
];

/// Whether `value` is one of the repository's dev secrets.
pub fn is_dev_secret(value: &str) -> bool {
    DEV_SECRETS.contains(&value)
}

/// A service's settings could not be loaded, or the profile refuses them: the whole message.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct LoadError(String);

/// What a service's `main` does after loading its settings.
pub enum Start<S> {
    /// Run with these settings.
    Run(S),
    /// `--print-config` printed the settings and the verdict: exit now.
    Printed,
}

/// Loads a service's settings from the process environment: parses every value (`build`),
/// applies the profile (`refusals`: the production refusals; dev prints its banner) and, with
/// `--print-config` among the arguments, prints every declared setting with its source, secrets
/// masked, then the verdict.
pub fn load<S, E: fmt::Display>(
    service: &str,
    lists: &[&[&'static Setting]],
    build: impl FnOnce(&Env) -> Result<S, E>,
    refusals: impl FnOnce(&S, &Env) -> Refusals,
) -> Result<Start<S>, LoadError> {
    let print = std::env::args().skip(1).any(|a| a == "--print-config");
    let env = Env::from_process(lists).map_err(|e| LoadError(format!("{service}: {e}")))?;
    if print {
        print!("{}", env.report());
    }
    let settings = build(&env).map_err(|e| LoadError(format!("{service}: {e}")))?;
    refusals(&settings, &env)
        .enforce(&env, service)
        .map_err(|e| LoadError(format!("{service}: {e}")))?;
    if print {
        println!("# {service}: accepted in the {:?} profile", env.profile());
        return Ok(Start::Printed);
    }
    Ok(Start::Run(settings))
}
