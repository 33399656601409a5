//! How one value of the file is read: as text, a boolean, a number, a duration or a path, with the
//! one-line error for a value of the wrong shape. The broker's build and the authenticators
//! ([`SettingsSource`]) read values the same way, through this one impl.

use std::path::PathBuf;
use std::time::Duration;

use remoteproxy_authenticators::config::SettingsSource;

use super::error::{ConfigError, shown};
use super::ini::Document;
use super::schema::declared;

/// Longest timeout accepted (365 days), so that `Instant::now() + timeout` anywhere in the broker
/// can never overflow and panic.
const MAX_MILLIS: u64 = 365 * 24 * 60 * 60 * 1000;

impl Document<'_> {
    /// A value the schema gives a default, so it is always there.
    pub(super) fn given<T>(&self, section: &str, key: &str, value: Option<T>) -> Result<T, ConfigError> {
        value.ok_or_else(|| self.bad(section, key, "missing"))
    }

    pub(super) fn bad(&self, section: &str, key: &str, problem: impl Into<String>) -> ConfigError {
        ConfigError::bad_value(Some(self.path), section, key, problem)
    }

    /// A path; an empty value is `Some(None)`, i.e. "explicitly not set".
    pub(super) fn optional_path(&self, section: &str, key: &str) -> Option<Option<PathBuf>> {
        self.get(section, key).map(|value| (!value.is_empty()).then(|| PathBuf::from(value)))
    }
}

/// The file as the authenticators read their sections, and as the broker's build reads its own.
impl SettingsSource for Document<'_> {
    type Error = ConfigError;

    fn has_section(&self, section: &str) -> bool {
        self.sections.iter().any(|name| name == section)
    }

    fn text(&self, section: &str, key: &str) -> Option<&str> {
        self.get(section, key)
    }

    fn boolean(&self, section: &str, key: &str) -> Result<Option<bool>, ConfigError> {
        let Some(value) = self.get(section, key) else {
            return Ok(None);
        };
        match value.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(Some(true)),
            "false" | "0" | "no" | "off" => Ok(Some(false)),
            _ => Err(self.bad(
                section,
                key,
                format!("{} is not a boolean (use true or false)", shown(key, value)),
            )),
        }
    }

    /// A plain decimal number, no sign, at most `max`; the key's declared type names the unit in
    /// messages ("is not a whole number of milliseconds").
    fn number(&self, section: &str, key: &str, max: u64) -> Result<Option<u64>, ConfigError> {
        let Some(value) = self.get(section, key) else {
            return Ok(None);
        };
        let unit = declared(section, key).and_then(|declared| declared.kind.unit());
        if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
            let of_unit = unit.map(|unit| format!(" of {unit}")).unwrap_or_default();
            return Err(self.bad(
                section,
                key,
                format!("{} is not a whole number{of_unit}", shown(key, value)),
            ));
        }
        match value.parse::<u64>() {
            Ok(number) if number <= max => Ok(Some(number)),
            _ if max == u64::MAX => {
                Err(self.bad(section, key, format!("{} is too large", shown(key, value))))
            }
            _ => {
                let unit = unit.map(|unit| format!(" {unit}")).unwrap_or_default();
                Err(self.bad(
                    section,
                    key,
                    format!("{} is too large (at most {max}{unit})", shown(key, value)),
                ))
            }
        }
    }

    /// A duration in whole milliseconds, 0 included (callers decide whether 0 is allowed).
    fn millis(&self, section: &str, key: &str) -> Result<Option<Duration>, ConfigError> {
        Ok(self.number(section, key, MAX_MILLIS)?.map(Duration::from_millis))
    }

    fn bad(&self, section: &str, key: &str, problem: String) -> ConfigError {
        Document::bad(self, section, key, problem)
    }

    fn shown(&self, key: &str, value: &str) -> String {
        shown(key, value)
    }
}
