//! Settings: every `INBOX_*` variable a service reads is declared once, as a [`Setting`] (name,
//! type, default, doc, secret or not), in the list of the service that reads it. A service takes a
//! snapshot of its environment ([`Env`]) at start, reads each value through its declaration and
//! refuses to start on a bad value with an error naming the variable; `<service> --print-config`
//! prints the list with each value's source, secrets masked ([`Env::report`]). The README's
//! configuration table is checked against these lists by a test (`e2e/tests/settings.rs`).
//!
//! Why not a config crate: the values come from the environment only (a Kubernetes Deployment's
//! `env`/`envFrom`), and what must be the product's own is the list itself (docs, secrets, the
//! production profile's rules), which a loader would not give.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

pub use secrecy::{ExposeSecret, SecretString};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("setting {name}={value:?}: {reason}")]
pub struct SettingError {
    pub name: String,
    pub value: String,
    pub reason: String,
}

/// What kind of value a setting takes (shown in `--print-config` and the README).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Text,
    /// Never printed: `--print-config` shows whether it is set, not its value.
    Secret,
    /// A URL whose password part (if any) is never printed.
    Url,
    /// `host:port`.
    Addr,
    Int,
    Bool,
    Path,
    /// One of the listed words.
    Choice(&'static [&'static str]),
}

impl Kind {
    pub fn describe(&self) -> String {
        match self {
            Kind::Text => "text".into(),
            Kind::Secret => "secret".into(),
            Kind::Url => "URL".into(),
            Kind::Addr => "host:port".into(),
            Kind::Int => "integer".into(),
            Kind::Bool => "true/false".into(),
            Kind::Path => "path".into(),
            Kind::Choice(words) => words.join(" \\| "),
        }
    }
}

/// One environment variable, declared once.
#[derive(Debug)]
pub struct Setting {
    pub name: &'static str,
    pub kind: Kind,
    /// Used when the variable is unset or empty; `None`: no value (optional, or required where
    /// the service says so).
    pub default: Option<&'static str>,
    pub doc: &'static str,
}

impl Setting {
    pub const fn new(
        name: &'static str,
        kind: Kind,
        default: &'static str,
        doc: &'static str,
    ) -> Self {
        Self {
            name,
            kind,
            default: Some(default),
            doc,
        }
    }

    /// A setting with no default.
    pub const fn optional(name: &'static str, kind: Kind, doc: &'static str) -> Self {
        Self {
            name,
            kind,
            default: None,
            doc,
        }
    }

    pub fn is_secret(&self) -> bool {
        self.kind == Kind::Secret
    }
}

/// How strictly a service checks its settings (`INBOX_PROFILE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// `make run` and the tests: local defaults, dev secrets allowed, a warning banner at start.
    Dev,
    /// A bank's deployment: refuses to start on anything insecure (see [`Refusals`]).
    Production,
}

pub static PROFILE: Setting = Setting::new(
    "INBOX_PROFILE",
    Kind::Choice(&["dev", "production"]),
    "dev",
    "`production` refuses to start on an insecure setting (see Production); `dev` warns",
);

/// A snapshot of the process environment, read through the declarations of one service.
pub struct Env {
    vars: BTreeMap<String, String>,
    declared: Vec<&'static Setting>,
    profile: Profile,
}

impl Env {
    /// The `INBOX_*` variables of this process, for a service that declares `lists`.
    pub fn from_process(lists: &[&[&'static Setting]]) -> Result<Self, SettingError> {
        Self::from_vars(
            std::env::vars().filter(|(k, _)| k.starts_with("INBOX_")),
            lists,
        )
    }

    /// An environment of the given variables (tests, tools).
    pub fn from_vars(
        vars: impl IntoIterator<Item = (String, String)>,
        lists: &[&[&'static Setting]],
    ) -> Result<Self, SettingError> {
        let mut declared: Vec<&'static Setting> = vec![&PROFILE];
        for list in lists {
            for s in *list {
                if !declared.iter().any(|d| d.name == s.name) {
                    declared.push(s);
                }
            }
        }
        let mut env = Self {
            vars: vars.into_iter().filter(|(_, v)| !v.is_empty()).collect(),
            declared,
            profile: Profile::Dev,
        };
        env.profile = match env.text(&PROFILE).as_str() {
            "dev" => Profile::Dev,
            "production" => Profile::Production,
            other => {
                return Err(env.error(&PROFILE, other, "expected `dev` or `production`"));
            }
        };
        Ok(env)
    }

    pub fn profile(&self) -> Profile {
        self.profile
    }

    pub fn is_production(&self) -> bool {
        self.profile == Profile::Production
    }

    fn check_declared(&self, s: &Setting) {
        debug_assert!(
            self.declared.iter().any(|d| d.name == s.name),
            "{} is read but not declared in this service's settings",
            s.name
        );
    }

    /// The variable's own value (set and not empty), without the default.
    pub fn raw(&self, s: &Setting) -> Option<&str> {
        self.check_declared(s);
        self.vars.get(s.name).map(String::as_str)
    }

    /// Whether the variable is set (not empty).
    pub fn is_set(&self, s: &Setting) -> bool {
        self.raw(s).is_some()
    }

    /// The value, else the default, else `None`.
    pub fn opt(&self, s: &Setting) -> Option<String> {
        self.raw(s).or(s.default).map(str::to_owned)
    }

    /// The value, else the default, else empty.
    pub fn text(&self, s: &Setting) -> String {
        self.opt(s).unwrap_or_default()
    }

    /// The value (or default) parsed; an error naming the variable when it does not parse or
    /// when neither is there.
    pub fn parse<T: FromStr>(&self, s: &Setting) -> Result<T, SettingError>
    where
        T::Err: fmt::Display,
    {
        self.opt_parse(s)?
            .ok_or_else(|| self.error(s, "", "required, and not set"))
    }

    /// The value (or default) parsed, `None` when neither is there.
    pub fn opt_parse<T: FromStr>(&self, s: &Setting) -> Result<Option<T>, SettingError>
    where
        T::Err: fmt::Display,
    {
        let Some(v) = self.opt(s) else {
            return Ok(None);
        };
        if let Kind::Choice(words) = s.kind
            && !words.contains(&v.as_str())
        {
            return Err(self.error(s, &v, format!("expected one of {}", words.join(", "))));
        }
        v.parse()
            .map(Some)
            .map_err(|e: T::Err| self.error(s, &v, e.to_string()))
    }

    /// A `true`/`false` setting (also `1`/`0`, `yes`/`no`, `on`/`off`).
    pub fn flag(&self, s: &Setting) -> Result<bool, SettingError> {
        let v = self.text(s);
        match v.to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" | "on" => Ok(true),
            "0" | "false" | "no" | "off" | "" => Ok(false),
            _ => Err(self.error(s, &v, "expected true or false")),
        }
    }

    /// A secret: never printed, never in `Debug`.
    pub fn secret(&self, s: &Setting) -> Option<SecretString> {
        debug_assert!(s.is_secret(), "{} is not declared secret", s.name);
        self.opt(s).map(SecretString::from)
    }

    /// An error about `s`; the value is masked when `s` is a secret.
    pub fn error(&self, s: &Setting, value: &str, reason: impl Into<String>) -> SettingError {
        SettingError {
            name: s.name.into(),
            value: if s.is_secret() && !value.is_empty() {
                "******".into()
            } else {
                value.into()
            },
            reason: reason.into(),
        }
    }

    /// Lookup of raw variables by name, for resolvers that merge a file with the environment
    /// (`communication`'s channels file).
    pub fn lookup(&self) -> impl Fn(&str) -> Option<String> + '_ {
        |name: &str| self.vars.get(name).cloned()
    }

    /// `INBOX_*` variables that no declaration of this service names (nor the dev scripts, see
    /// [`SCRIPT_VARIABLES`]): a typo such as `INBOX_JWKS_ULR` would otherwise be ignored in
    /// silence.
    pub fn undeclared(&self) -> Vec<&str> {
        self.vars
            .keys()
            .filter(|k| !self.declared.iter().any(|d| d.name == k.as_str()))
            .filter(|k| !is_script_variable(k) && !ENGINE_SETTINGS.contains(&k.as_str()))
            .map(String::as_str)
            .collect()
    }

    /// Every declared setting with its value and where it came from, secrets masked: the output
    /// of `--print-config`.
    pub fn report(&self) -> String {
        let mut out = String::new();
        let width = self
            .declared
            .iter()
            .map(|s| s.name.len())
            .max()
            .unwrap_or(0);
        for s in &self.declared {
            let (value, source) = match (self.vars.get(s.name), s.default) {
                (Some(v), _) => (shown(s, v), "env"),
                (None, Some(d)) => (shown(s, d), "default"),
                (None, None) => (String::new(), "unset"),
            };
            out.push_str(&format!(
                "{:<width$}  {:<8} {}\n",
                s.name,
                source,
                value,
                width = width
            ));
        }
        for name in self.undeclared() {
            out.push_str(&format!(
                "{name:<width$}  ignored  (not a setting of the engine)\n"
            ));
        }
        out
    }
}

/// How a value is printed: secrets as `******`, URL passwords masked.
fn shown(s: &Setting, v: &str) -> String {
    match s.kind {
        Kind::Secret => "******".into(),
        Kind::Url => mask_url_password(v),
        _ => v.to_owned(),
    }
}

/// `scheme://user:pw@host/...` with the password replaced by `******`.
pub fn mask_url_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:******@{host}{tail}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

pub mod common;
mod profile;
mod registry;
pub mod temporal;
#[cfg(test)]
mod tests;

pub use common::{AuthSettings, Common, Database, JwksSettings, database_url_verifies_tls};
pub use profile::{DEV_SECRETS, LoadError, Refusals, Start, StartRefused, is_dev_secret, load};
pub use registry::{ENGINE_SETTINGS, SCRIPT_VARIABLES, is_script_variable};
