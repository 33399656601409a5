//! `[RendezvousServer] policyFile`: which certificate subjects may join which meetings. Off by
//! default: then any certificate of the root may join any meeting, as in Micronets.
//!
//! One rule per line, `SUBJECT: PATTERN [PATTERN ...]`; blank lines and lines starting with `#`
//! are ignored. SUBJECT is matched exactly against the client certificate's O and its CN (so
//! `Micronets Manager Cert: *` lets every manager in). A PATTERN is a meeting id where `*`
//! stands for any run of characters, slashes included (`micronets-dhcp-*`, `site-7/*`). A peer
//! whose subject has no rule, or whose meeting matches none of its patterns, is refused.
//!
//! ```text
//! # managers reach every gateway; each gateway only its own meeting
//! Micronets Manager Cert: *
//! Gateway 0001: micronets-dhcp-0001
//! ```

use std::collections::HashMap;
use std::path::Path;

/// The rules of a policy file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    rules: HashMap<String, Vec<String>>,
}

impl Policy {
    /// Reads `path`; the error names the line that is wrong.
    pub fn load(path: &Path) -> Result<Policy, String> {
        let text =
            std::fs::read_to_string(path).map_err(|e| format!("cannot read \"{}\": {e}", path.display()))?;
        Policy::parse(&text)
            .map_err(|(line, problem)| format!("\"{}\" line {line}: {problem}", path.display()))
    }

    /// Parses a policy's text: the rules, or the line number and what is wrong there.
    pub fn parse(text: &str) -> Result<Policy, (usize, &'static str)> {
        let mut rules: HashMap<String, Vec<String>> = HashMap::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((subject, patterns)) = line.rsplit_once(':') else {
                return Err((n + 1, "expected SUBJECT: PATTERN [PATTERN ...]"));
            };
            let (subject, patterns) = (subject.trim(), patterns.split_whitespace().map(str::to_string));
            if subject.is_empty() {
                return Err((n + 1, "the subject is empty"));
            }
            let patterns: Vec<String> = patterns.collect();
            if patterns.is_empty() {
                return Err((n + 1, "no meeting pattern after the colon"));
            }
            rules.entry(subject.to_string()).or_default().extend(patterns);
        }
        Ok(Policy { rules })
    }

    /// Whether a peer whose certificate names `subjects` (its O and CN) may join `meeting`.
    pub fn allows(&self, subjects: &[String], meeting: &str) -> bool {
        subjects
            .iter()
            .filter_map(|subject| self.rules.get(subject))
            .flatten()
            .any(|pattern| matches(pattern, meeting))
    }
}

/// Glob matching with `*` only (any run of characters, possibly empty).
fn matches(pattern: &str, text: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = text.strip_prefix(first) else { return false };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else { return rest.is_empty() };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_reach_only_the_meetings_their_patterns_name() {
        let policy = Policy::parse(
            "# comment\n\nMicronets Manager Cert: *\nGateway 0001: micronets-dhcp-0001 site-7/*\n",
        )
        .unwrap();
        let manager = ["Micronets Manager Cert".to_string()];
        let gateway = ["Gateway 0001".to_string(), "gw1.example".to_string()];
        assert!(policy.allows(&manager, "anything/at/all"));
        assert!(policy.allows(&gateway, "micronets-dhcp-0001"));
        assert!(policy.allows(&gateway, "site-7/room"));
        assert!(!policy.allows(&gateway, "micronets-dhcp-0002"));
        assert!(!policy.allows(&gateway, "micronets-dhcp-00011"), "a pattern without * is exact");
        assert!(!policy.allows(&["Stranger".to_string()], "micronets-dhcp-0001"), "no rule, no entry");
    }

    #[test]
    fn globs_match_any_run_of_characters() {
        for (pattern, text, expected) in [
            ("*", "", true),
            ("a*c", "abbbc", true),
            ("a*c", "ac", true),
            ("a*c", "acx", false),
            ("*-0001", "dhcp-0001", true),
            ("a*b*c", "a-b-b-c", true),
            ("a*b*c", "a-c", false),
            ("ab*ba", "aba", false),
        ] {
            assert_eq!(matches(pattern, text), expected, "{pattern} ~ {text}");
        }
    }

    #[test]
    fn a_bad_line_is_named() {
        assert_eq!(
            Policy::parse("ok: *\nno colon here\n"),
            Err((2, "expected SUBJECT: PATTERN [PATTERN ...]"))
        );
        assert_eq!(Policy::parse(": *"), Err((1, "the subject is empty")));
        assert_eq!(Policy::parse("Somebody:"), Err((1, "no meeting pattern after the colon")));
    }
}
