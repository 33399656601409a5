//! Why a configuration cannot be used, in one line that names the file, the section and the key;
//! and how a value may appear in such a line (never a secret's).

use std::path::{Path, PathBuf};

use super::schema::known_sections;

/// Why a configuration could not be loaded. Every variant displays as one line that names the
/// file (and, where there is one, the section and key), ready to be printed as is.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read. The I/O error is part of the message and deliberately not
    /// exposed as `source()`, so that printing the error chain does not repeat it.
    #[error("{}: cannot read the configuration file: {error}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        error: std::io::Error,
    },
    /// The file is not in INI syntax.
    #[error("{}: line {line}: {problem}", path.display())]
    Syntax {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong with that line.
        problem: String,
    },
    /// A `[Section]` this build does not know.
    #[error("{}: [{section}]: unknown section (known sections: {})", path.display(), known_sections())]
    UnknownSection {
        /// The file.
        path: PathBuf,
        /// The section as written.
        section: String,
    },
    /// A key that its section does not have.
    #[error("{}: [{section}] {key}: unknown key ({hint})", path.display())]
    UnknownKey {
        /// The file.
        path: PathBuf,
        /// The section (`General` for keys before the first header).
        section: String,
        /// The key as written.
        key: String,
        /// Which keys the section does take.
        hint: String,
    },
    /// A known key with a value that cannot be used.
    #[error("{}: [{section}] {key}: {problem}", display_file(file.as_deref()))]
    BadValue {
        /// The file; `None` when the value came from the built-in defaults.
        file: Option<PathBuf>,
        /// The section.
        section: String,
        /// The key.
        key: String,
        /// What is wrong. Must not contain the value of a secret key; build it with `shown`.
        problem: String,
    },
}

impl ConfigError {
    /// A value that cannot be used: `file: [section] key: problem`. `file` is `None` for the
    /// built-in defaults. Used by later stages too (e.g. TLS loading opens the `[SSL]` files).
    pub fn bad_value(file: Option<&Path>, section: &str, key: &str, problem: impl Into<String>) -> Self {
        ConfigError::BadValue {
            file: file.map(Path::to_path_buf),
            section: section.to_string(),
            key: key.to_string(),
            problem: problem.into(),
        }
    }
}

fn display_file(file: Option<&Path>) -> String {
    match file {
        Some(path) => path.display().to_string(),
        None => "built-in defaults".to_string(),
    }
}

/// Keys whose names look secret by the rule of [`is_secret_key`] but hold something harmless.
const NOT_SECRET_KEYS: &[&str] = &["certificateKey"];

/// The longest excerpt of a value shown in a message, in characters.
const MAX_SHOWN_CHARS: usize = 64;

/// Whether the value of `key` may be a secret and so must never appear in a message: any key whose
/// name contains "token", "password", "secret", "key" or "authorization", except those listed as
/// harmless (paths).
fn is_secret_key(key: &str) -> bool {
    let lower = key.to_ascii_lowercase();
    let looks_secret =
        ["token", "password", "secret", "key", "authorization"].iter().any(|word| lower.contains(word));
    looks_secret && !NOT_SECRET_KEYS.contains(&key)
}

/// How the value of `key` appears in a message: quoted and escaped so it stays on one line,
/// shortened if long, and replaced by `(hidden value)` if the key may hold a secret. Every message
/// that mentions a value goes through here.
pub(crate) fn shown(key: &str, value: &str) -> String {
    if is_secret_key(key) {
        return "(hidden value)".to_string();
    }
    if value.chars().count() > MAX_SHOWN_CHARS {
        let head: String = value.chars().take(MAX_SHOWN_CHARS).collect();
        format!("{head:?}...")
    } else {
        format!("{value:?}")
    }
}
