//! Key by key, built-in default < file < environment, with every error located: a file value by
//! its key path, line and column, an environment value by its variable.

use platform::settings::SettingError;
use platform::yaml::{FileError, Marks};

use super::ChannelsError;

/// Where a value came from: the file (located by its key path) or an environment variable.
pub(super) enum Origin<'a> {
    File(&'a str),
    Env(&'static str),
    /// The built-in default, or nothing at all: reported against the file's key path.
    Default(&'a str),
}

pub(super) struct Resolver<'a> {
    pub(super) file: Option<(&'a str, Marks)>,
    pub(super) env: &'a dyn Fn(&str) -> Option<String>,
}

impl Resolver<'_> {
    pub(super) fn env(&self, name: &'static str) -> Option<String> {
        (self.env)(name).filter(|v| !v.is_empty())
    }

    /// An error about the value at `origin`.
    pub(super) fn error(
        &self,
        origin: Origin<'_>,
        value: &str,
        reason: impl Into<String>,
    ) -> ChannelsError {
        let reason = reason.into();
        match (origin, &self.file) {
            (Origin::Env(name), _) => SettingError {
                name: name.into(),
                value: value.into(),
                reason,
            }
            .into(),
            (Origin::File(path) | Origin::Default(path), Some((file, marks))) => {
                let (line, column) = marks.find(path);
                FileError::At {
                    file: (*file).to_owned(),
                    line,
                    column,
                    message: format!("{path}: {reason}"),
                }
                .into()
            }
            (Origin::File(path) | Origin::Default(path), None) => SettingError {
                name: path.into(),
                value: value.into(),
                reason,
            }
            .into(),
        }
    }

    /// The environment's value of `var`, else the file's, else `None`.
    pub(super) fn text<'p>(
        &self,
        var: &'static str,
        path: &'p str,
        file: Option<&String>,
    ) -> Option<(String, Origin<'p>)> {
        match self.env(var) {
            Some(v) => Some((v, Origin::Env(var))),
            None => file.map(|v| (v.clone(), Origin::File(path))),
        }
    }

    /// `_path` names the file key the value would come from (read at the call site).
    pub(super) fn number(
        &self,
        var: &'static str,
        _path: &str,
        file: Option<u64>,
        default: u64,
    ) -> Result<u64, ChannelsError> {
        match self.env(var) {
            Some(v) => v.parse().map_err(|e: std::num::ParseIntError| {
                self.error(Origin::Env(var), &v, e.to_string())
            }),
            None => Ok(file.unwrap_or(default)),
        }
    }

    pub(super) fn flag(
        &self,
        var: &'static str,
        file: Option<bool>,
    ) -> Result<Option<bool>, ChannelsError> {
        match self.env(var) {
            Some(v) => match v.to_ascii_lowercase().as_str() {
                "1" | "true" | "yes" | "on" => Ok(Some(true)),
                "0" | "false" | "no" | "off" => Ok(Some(false)),
                _ => Err(self.error(Origin::Env(var), &v, "expected true or false")),
            },
            None => Ok(file),
        }
    }

    /// A secret from the environment; never printed.
    pub(super) fn secret(&self, var: &'static str) -> Option<String> {
        self.env(var)
    }

    pub(super) fn required_secret(
        &self,
        var: &'static str,
        because: Origin<'_>,
        what: &str,
    ) -> Result<String, ChannelsError> {
        self.secret(var).ok_or_else(|| {
            self.error(
                because,
                "",
                format!(
                    "{what} is on but {var} is not set (secrets come only from the environment)"
                ),
            )
        })
    }
}
