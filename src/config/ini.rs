//! The INI loader: nymea-remoteproxy's Qt `QSettings` file, read unchanged, into a `Config`.
//!
//! A small hand parser rather than `rust-ini`: rust-ini silently joins a line that has no `=` with
//! the next line into one key (so a typo would surface as a baffling multi-line "unknown key"),
//! reads an indented comment as a key, takes `:` as a second key/value separator and strips single
//! quotes, none of which Qt does. The subset of Qt's format that a hand-written or Qt-written
//! configuration file uses is a few lines of code, and owning it means every syntax error has a
//! line number.
//!
//! What is accepted:
//! * `[Section]` headers, `key=value` lines, blank lines, and whole-line comments whose first
//!   non-blank character is `;` or `#`. There are no inline comments: `port=443 ; https` is the
//!   value `443 ; https`, which is then rejected as not a number rather than silently cut.
//! * Keys and section names are case-sensitive (the reference's are camelCase). Keys and values are
//!   trimmed. Keys before the first header belong to Qt's `[General]` group, which has no known
//!   keys; an empty `[General]` header (Qt writes one) is accepted.
//! * Values: a value in double quotes has the quotes removed (Qt quotes strings with leading or
//!   trailing blanks, `,` or `;`). Qt's backslash escapes are decoded inside and outside quotes
//!   (`\\`, `\"`, `\n`, `\t`, `\r`; any other `\c` is kept as written). Qt would read an unquoted
//!   value with a `,` as a string list; we keep it as one string.
//! * A key given twice: the last one wins. A section given twice: its keys are merged.
//! * Everything unknown (section or key) is an error, so a misspelt key never silently runs with a
//!   default.
//!
//! Every error is one line naming the file, the section and the key. Values are shown quoted and
//! escaped (so they stay on one line) and shortened, and never for a key that may hold a secret
//! (see `shown`).

use std::path::Path;

use super::error::ConfigError;
use super::schema::{GENERAL, SYSTEM_RUNTIME_DIR, declared, sections};

/// The file's bytes as text: UTF-8 (what Qt writes), with an optional byte order mark.
pub(super) fn decode(bytes: Vec<u8>, path: &Path) -> Result<String, ConfigError> {
    match String::from_utf8(bytes) {
        Ok(mut text) => {
            if text.starts_with('\u{feff}') {
                text.drain(..'\u{feff}'.len_utf8());
            }
            Ok(text)
        }
        Err(error) => {
            let valid = &error.as_bytes()[..error.utf8_error().valid_up_to()];
            let line = valid.iter().filter(|&&b| b == b'\n').count() + 1;
            Err(ConfigError::Syntax {
                path: path.to_path_buf(),
                line,
                problem: "the file is not valid UTF-8".to_string(),
            })
        }
    }
}

/// One `key=value` line.
#[derive(Debug)]
pub(super) struct Entry {
    pub(super) section: String,
    pub(super) key: String,
    pub(super) value: String,
}

/// The file as parsed, before interpretation.
#[derive(Debug)]
pub(super) struct Document<'a> {
    pub(super) path: &'a Path,
    /// Section headers in file order (repeats included).
    pub(super) sections: Vec<String>,
    /// Entries in file order; lookups take the last one, so the last duplicate wins.
    pub(super) entries: Vec<Entry>,
    /// The declared defaults in the system runtime directory, moved to this user's (see
    /// [`runtime_dir`](super::runtime_dir)).
    runtime_defaults: Vec<Entry>,
}

impl<'a> Document<'a> {
    pub(super) fn parse(text: &str, path: &'a Path) -> Result<Self, ConfigError> {
        let syntax = |line: usize, problem: &str| ConfigError::Syntax {
            path: path.to_path_buf(),
            line,
            problem: problem.to_string(),
        };
        let mut doc =
            Document { path, sections: Vec::new(), entries: Vec::new(), runtime_defaults: Vec::new() };
        let mut section = GENERAL.to_string();
        for (index, raw) in text.lines().enumerate() {
            let number = index + 1;
            let line = raw.trim();
            if line.is_empty() || line.starts_with(';') || line.starts_with('#') {
                continue;
            }
            if let Some(rest) = line.strip_prefix('[') {
                let Some(name) = rest.strip_suffix(']') else {
                    return Err(syntax(
                        number,
                        "a section header must be \"[Name]\" with nothing after the ']'",
                    ));
                };
                let name = name.trim();
                if name.is_empty() {
                    return Err(syntax(number, "empty section name \"[]\""));
                }
                section = name.to_string();
                doc.sections.push(section.clone());
                continue;
            }
            // The line itself is never shown: a key=value line missing its '=' could be a secret.
            let Some((key, value)) = line.split_once('=') else {
                return Err(syntax(
                    number,
                    "expected \"key=value\", a \"[Section]\" header or a comment (';' or '#')",
                ));
            };
            let key = key.trim();
            if key.is_empty() {
                return Err(syntax(number, "missing key name before '='"));
            }
            let value = unquote(value.trim()).map_err(|problem| syntax(number, problem))?;
            doc.entries.push(Entry { section: section.clone(), key: key.to_string(), value });
        }
        doc.runtime_defaults = runtime_defaults();
        Ok(doc)
    }

    /// The value of the last `key=` line in `section` or, when the file has none, the key's
    /// declared default.
    pub(super) fn get(&self, section: &str, key: &str) -> Option<&str> {
        let declaration = declared(section, key);
        debug_assert!(declaration.is_some(), "[{section}] {key} is read but not declared in the schema");
        last_of(&self.entries, section, key)
            .or_else(|| last_of(&self.runtime_defaults, section, key))
            .or_else(|| declaration.and_then(|key| key.default))
    }
}

fn last_of<'e>(entries: &'e [Entry], section: &str, key: &str) -> Option<&'e str> {
    entries
        .iter()
        .rev()
        .find(|entry| entry.section == section && entry.key == key)
        .map(|entry| entry.value.as_str())
}

/// The defaults declared in [`SYSTEM_RUNTIME_DIR`], where this user keeps its sockets instead.
fn runtime_defaults() -> Vec<Entry> {
    let runtime = super::runtime_dir();
    if runtime == Path::new(SYSTEM_RUNTIME_DIR) {
        return Vec::new();
    }
    let mut moved = Vec::new();
    for section in sections() {
        for key in section.keys {
            let Some(file) =
                key.default.and_then(|value| Path::new(value).strip_prefix(SYSTEM_RUNTIME_DIR).ok())
            else {
                continue;
            };
            moved.push(Entry {
                section: section.name.to_string(),
                key: key.name.to_string(),
                value: runtime.join(file).display().to_string(),
            });
        }
    }
    moved
}

/// Decodes a trimmed raw value the way Qt does for the subset we accept: a fully double-quoted
/// value loses its quotes; backslash escapes are decoded everywhere.
fn unquote(raw: &str) -> Result<String, &'static str> {
    let Some(inner) = raw.strip_prefix('"') else {
        return Ok(unescape(raw));
    };
    // Find the closing quote: the first '"' not preceded by an escaping backslash.
    let mut escaped = false;
    for (index, ch) in inner.char_indices() {
        match ch {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => {
                if !inner[index + 1..].trim().is_empty() {
                    return Err("text after the closing double quote");
                }
                return Ok(unescape(&inner[..index]));
            }
            _ => {}
        }
    }
    Err("missing closing double quote")
}

fn unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(ch) = chars.next() {
        if ch != '\\' {
            out.push(ch);
            continue;
        }
        match chars.next() {
            Some('\\') => out.push('\\'),
            Some('"') => out.push('"'),
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    out
}
