//! The `static` authenticator: a file of token hashes.
//!
//! Each line is `<sha256-hex-of-token> <user name>`: the SHA-256 digest of the token as 64
//! hexadecimal characters, white space, and the user name (the rest of the line; it may contain
//! spaces). Blank lines and lines starting with `#` are ignored. The tokens themselves are never
//! stored. A hash may appear only once.
//!
//! ```text
//! # sha256 of the token                                          user
//! 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08 alice
//! ```
//!
//! (`printf %s "$TOKEN" | sha256sum` gives the hash.)
//!
//! The file is read by [`StaticTokenAuthenticator::new`], so a broken file stops the broker at
//! start with an error naming the file and the line (the line itself is never echoed: it could be
//! a raw token pasted by mistake). Afterwards it is reloaded
//! * on SIGHUP ([`Authenticator::reload`]), synchronously, the error text going back to the caller;
//! * by a watcher that reads the file every `reloadInterval` and reloads when its content changed
//!   (a content digest, not only mtime and length, so edits within one mtime tick and symlink swaps
//!   are seen; token files are small, so reading one every few seconds costs nothing). A changed
//!   file is loaded once two reads 100 ms apart agree, so a file rewritten in place is not loaded
//!   half-written.
//!
//! A reload that fails keeps the previous table (and logs a warning naming the line). Reloads
//! never touch established connections: they only swap the table that the next authentication
//! looks in.
//!
//! The watcher is a tokio task. `new` runs before the broker's runtime exists, so the task is
//! started by the first call of `authenticate` (or already by `new` when it runs inside a
//! runtime); the first start also checks the file once, so a change made before the first client
//! is not missed. The task holds only a weak reference and stops when the authenticator is dropped.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use async_trait::async_trait;
use sha2::{Digest, Sha256};
use tokio::sync::oneshot;

use crate::settings::StaticSettings;
use crate::{AuthRequest, AuthenticationError, Authenticator, BuildError, Verdict};

const SECTION: &str = "StaticAuthenticator";

/// How long a changed file must stay the same before the watcher loads it (at most the interval).
const SETTLE: Duration = Duration::from_millis(100);

/// Token digest → user name.
type Table = HashMap<[u8; 32], String>;

/// Checks tokens against a file of their SHA-256 digests.
pub struct StaticTokenAuthenticator {
    shared: Arc<Shared>,
    /// The running watcher: dropping the sender stops it.
    watcher: Mutex<Option<Watcher>>,
}

struct Watcher {
    _stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

/// What the watcher task shares with the authenticator.
struct Shared {
    file: PathBuf,
    reload_interval: Duration,
    table: RwLock<Arc<Table>>,
    /// Digest of the file content last seen (loaded, or refused), so one state is loaded or
    /// warned about once.
    seen: Mutex<[u8; 32]>,
}

impl StaticTokenAuthenticator {
    /// Reads and checks the file now. Starts the watcher when called inside a tokio runtime;
    /// otherwise the first `authenticate` starts it.
    pub fn new(settings: &StaticSettings) -> Result<Self, BuildError> {
        let content = std::fs::read(&settings.file).map_err(|e| {
            BuildError::new(SECTION, "file", format!("cannot read \"{}\": {e}", settings.file.display()))
        })?;
        let table =
            parse(&settings.file, &content).map_err(|problem| BuildError::new(SECTION, "file", problem))?;
        log_loaded(&settings.file, &table, "loaded");
        let shared = Arc::new(Shared {
            file: settings.file.clone(),
            reload_interval: settings.reload_interval.max(Duration::from_millis(10)),
            table: RwLock::new(Arc::new(table)),
            seen: Mutex::new(Sha256::digest(&content).into()),
        });
        let authenticator = StaticTokenAuthenticator { shared, watcher: Mutex::new(None) };
        authenticator.ensure_watcher(false);
        Ok(authenticator)
    }

    /// Starts the watcher if it is not running (first use, or its runtime went away) and a
    /// runtime is at hand. With `catch_up` the file is checked once right away, because changes
    /// made while no watcher ran would otherwise wait a whole interval.
    fn ensure_watcher(&self, catch_up: bool) {
        let mut watcher = self.watcher.lock().expect("watcher lock");
        if watcher.as_ref().is_some_and(|w| !w.task.is_finished()) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        if catch_up {
            self.shared.check(std::fs::read(&self.shared.file));
        }
        let (stop, stopped) = oneshot::channel();
        let task = runtime.spawn(watch(Arc::downgrade(&self.shared), self.shared.reload_interval, stopped));
        *watcher = Some(Watcher { _stop: stop, task });
    }

    /// The number of token hashes in the current table.
    pub fn len(&self) -> usize {
        self.shared.table.read().expect("table lock").len()
    }

    /// Whether the current table is empty (every token is refused).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Shared {
    /// Whether `digest` is not the content last seen.
    fn differs(&self, digest: &[u8; 32]) -> bool {
        *self.seen.lock().expect("seen lock") != *digest
    }

    /// Compares a fresh read of the file with the last state seen, and loads it when it differs.
    /// Returns whether a new table was loaded.
    fn check(&self, read: std::io::Result<Vec<u8>>) -> bool {
        let content = match read {
            Ok(content) => content,
            Err(error) => {
                let mut seen = self.seen.lock().expect("seen lock");
                // Remember "unreadable" as an all-zero digest, so the warning is not repeated.
                if *seen != [0; 32] {
                    *seen = [0; 32];
                    tracing::warn!(
                        file = %self.file.display(),
                        %error,
                        "static authenticator: cannot read the token file; keeping the previous tokens"
                    );
                }
                return false;
            }
        };
        let digest: [u8; 32] = Sha256::digest(&content).into();
        let mut seen = self.seen.lock().expect("seen lock");
        if *seen == digest {
            return false;
        }
        *seen = digest;
        match parse(&self.file, &content) {
            Ok(table) => {
                log_loaded(&self.file, &table, "reloaded after a change");
                *self.table.write().expect("table lock") = Arc::new(table);
                true
            }
            Err(problem) => {
                tracing::warn!(%problem, "static authenticator: the changed token file is broken; keeping the previous tokens");
                false
            }
        }
    }

    /// Reads and loads the file unconditionally (SIGHUP).
    fn reload(&self) -> Result<(), String> {
        let content =
            std::fs::read(&self.file).map_err(|e| format!("cannot read \"{}\": {e}", self.file.display()))?;
        let digest: [u8; 32] = Sha256::digest(&content).into();
        let mut seen = self.seen.lock().expect("seen lock");
        *seen = digest;
        let table = parse(&self.file, &content)?;
        log_loaded(&self.file, &table, "reloaded");
        *self.table.write().expect("table lock") = Arc::new(table);
        Ok(())
    }

    fn lookup(&self, token: &str) -> Option<String> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        // The digest (not the token) is the key; a hash lookup on it tells an attacker nothing
        // useful about any token.
        let table = self.table.read().expect("table lock").clone();
        table.get(&digest).cloned()
    }
}

/// Polls the file every `interval` until the authenticator is gone.
///
/// A changed file is read a second time after [`SETTLE`] and loaded only when both reads agree,
/// so an editor that truncates and rewrites the file in place is not caught half-way (which would
/// briefly load an empty or partial table).
async fn watch(shared: Weak<Shared>, interval: Duration, mut stopped: oneshot::Receiver<()>) {
    let settle = SETTLE.min(interval);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = &mut stopped => return,
        }
        let Some(file) = shared.upgrade().map(|s| s.file.clone()) else { return };
        let read = tokio::fs::read(&file).await;
        if let Ok(first) = &read {
            let digest: [u8; 32] = Sha256::digest(first).into();
            let Some(changed) = shared.upgrade().map(|s| s.differs(&digest)) else { return };
            if !changed {
                continue;
            }
            tokio::select! {
                _ = tokio::time::sleep(settle) => {}
                _ = &mut stopped => return,
            }
            let again = tokio::fs::read(&file).await;
            if !again.as_ref().is_ok_and(|second| Sha256::digest(second)[..] == digest[..]) {
                // Still being written: the next round looks again.
                continue;
            }
        }
        let Some(shared) = shared.upgrade() else { return };
        shared.check(read);
    }
}

fn log_loaded(file: &Path, table: &Table, what: &str) {
    if table.is_empty() {
        tracing::warn!(file = %file.display(), "static authenticator: the token file has no tokens; every client is refused");
    } else {
        tracing::info!(file = %file.display(), tokens = table.len(), "static authenticator: token file {what}");
    }
}

/// Parses the whole file. The error names the file and the line and says what is wrong, but never
/// quotes the line.
fn parse(file: &Path, content: &[u8]) -> Result<Table, String> {
    let mut table = Table::new();
    let mut first_line: HashMap<[u8; 32], usize> = HashMap::new();
    let content = content.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(content);
    for (index, raw) in content.split(|b| *b == b'\n').enumerate() {
        let number = index + 1;
        let bad = |problem: &str| format!("\"{}\" line {number}: {problem}", file.display());
        let line = std::str::from_utf8(raw).map_err(|_| bad("not UTF-8 text"))?.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (hash, user) = match line.split_once(|c: char| c.is_whitespace()) {
            Some((hash, user)) => (hash, user.trim()),
            None => (line, ""),
        };
        let digest = decode_hex(hash).ok_or_else(|| {
            bad("expected `<sha256-hex-of-token> <user name>`: the first field is not 64 hexadecimal \
                 characters (store the SHA-256 digest of the token, never the token)")
        })?;
        if user.is_empty() {
            return Err(bad("expected `<sha256-hex-of-token> <user name>`: the user name is missing"));
        }
        if let Some(previous) = first_line.insert(digest, number) {
            return Err(bad(&format!("the same token hash as line {previous}")));
        }
        table.insert(digest, user.to_string());
    }
    Ok(table)
}

fn decode_hex(text: &str) -> Option<[u8; 32]> {
    let bytes = text.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let nibble = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = [0u8; 32];
    for (i, pair) in bytes.chunks_exact(2).enumerate() {
        out[i] = nibble(pair[0])? << 4 | nibble(pair[1])?;
    }
    Some(out)
}

#[async_trait]
impl Authenticator for StaticTokenAuthenticator {
    fn kind(&self) -> &'static str {
        "static"
    }

    async fn authenticate(&self, request: &AuthRequest) -> Verdict {
        self.ensure_watcher(true);
        let token = request.token.expose_secret();
        if token.is_empty() {
            return Verdict::refuse(AuthenticationError::AuthenticationFailed);
        }
        match self.shared.lookup(token) {
            Some(user) => Verdict::accept(Some(user)),
            None => Verdict::refuse(AuthenticationError::AuthenticationFailed),
        }
    }

    fn reload(&self) -> Result<(), String> {
        self.shared.reload()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::request;

    fn hex(token: &str) -> String {
        Sha256::digest(token.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
    }

    fn settings(file: &Path, interval: Duration) -> StaticSettings {
        StaticSettings { file: file.to_path_buf(), reload_interval: interval }
    }

    fn write(file: &Path, text: &str) {
        // Write a sibling and rename it over the file, as careful editors do (atomic for the watcher).
        let tmp = file.with_extension("tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, file).unwrap();
    }

    async fn outcome(auth: &StaticTokenAuthenticator, token: &str) -> Verdict {
        auth.authenticate(&request(token, "n")).await
    }

    /// Waits (bounded) until `token` gets `expected`.
    async fn eventually(auth: &StaticTokenAuthenticator, token: &str, expected: AuthenticationError) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while outcome(auth, token).await.error != expected {
            assert!(tokio::time::Instant::now() < deadline, "token never got {expected}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn temp_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "static-tokens-test-{}-{}",
            std::process::id(),
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn parses_hashes_user_names_comments_and_blank_lines() {
        let text = format!(
            "\u{feff}# tokens\r\n\n{}  alice\r\n   {} Bob the Builder  \n# {} commented out\n",
            hex("a"),
            hex("b").to_uppercase(),
            hex("c")
        );
        let table = parse(Path::new("/t"), text.as_bytes()).unwrap();
        assert_eq!(table.len(), 2);
        let digest = |t: &str| -> [u8; 32] { Sha256::digest(t.as_bytes()).into() };
        assert_eq!(table[&digest("a")], "alice");
        assert_eq!(table[&digest("b")], "Bob the Builder");
        assert!(parse(Path::new("/t"), b"").unwrap().is_empty());
    }

    #[test]
    fn bad_lines_are_named_by_number_but_never_quoted() {
        let good = format!("{} alice\n", hex("a"));
        let cases = [
            (format!("{good}my-raw-secret-token alice\n"), 2, "64 hexadecimal"),
            (format!("# x\n\n{good}my-raw-secret-token\n"), 4, "64 hexadecimal"),
            (format!("{}\n", hex("my-raw-secret-token")), 1, "user name is missing"),
            (format!("{good}{good}"), 2, "same token hash as line 1"),
            (format!("{}x alice\n", hex("a")), 1, "64 hexadecimal"),
            (format!("{} alice\n", &hex("a")[..63]), 1, "64 hexadecimal"),
        ];
        for (text, line, what) in cases {
            let error = parse(Path::new("/etc/tokens"), text.as_bytes()).unwrap_err();
            assert!(error.starts_with(&format!("\"/etc/tokens\" line {line}: ")), "{error}");
            assert!(error.contains(what), "{error}");
            assert!(!error.contains("my-raw-secret-token") && !error.contains("alice"), "{error}");
        }
        let error = parse(Path::new("/t"), b"# ok\n\xff\xfe alice\n").unwrap_err();
        assert_eq!(error, "\"/t\" line 2: not UTF-8 text");
    }

    #[test]
    fn new_reports_unreadable_and_broken_files_outside_a_runtime() {
        let dir = temp_dir();
        let missing = dir.join("missing");
        let error = StaticTokenAuthenticator::new(&settings(&missing, Duration::from_secs(1))).err().unwrap();
        assert_eq!((error.section, error.key), ("StaticAuthenticator", "file"));
        assert!(error.problem.contains("cannot read") && error.problem.contains("missing"), "{error}");

        let file = dir.join("tokens");
        write(&file, "\nraw-token-value bob\n");
        let error = StaticTokenAuthenticator::new(&settings(&file, Duration::from_secs(1))).err().unwrap();
        assert!(error.to_string().contains(&format!("\"{}\" line 2:", file.display())), "{error}");
        assert!(!error.to_string().contains("raw-token-value"), "{error}");

        // A good file outside a runtime: no watcher yet, no panic.
        write(&file, &format!("{} alice\n", hex("a")));
        let auth = StaticTokenAuthenticator::new(&settings(&file, Duration::from_secs(1))).unwrap();
        assert_eq!(auth.len(), 1);
        assert!(auth.watcher.lock().unwrap().is_none());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test]
    async fn accepts_listed_tokens_with_their_user_and_refuses_others() {
        let dir = temp_dir();
        let file = dir.join("tokens");
        write(&file, &format!("{} alice\n{} bob smith\n", hex("token-a"), hex("token-b")));
        let auth = StaticTokenAuthenticator::new(&settings(&file, Duration::from_secs(60))).unwrap();
        assert_eq!(outcome(&auth, "token-a").await, Verdict::accept(Some("alice".into())));
        assert_eq!(outcome(&auth, "token-b").await, Verdict::accept(Some("bob smith".into())));
        for refused in ["token-c", "", "TOKEN-A", &hex("token-a")] {
            assert_eq!(
                outcome(&auth, refused).await,
                Verdict::refuse(AuthenticationError::AuthenticationFailed)
            );
        }
        assert!(!auth.verdict_depends_on_facts());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test]
    async fn the_watcher_reloads_changes_and_keeps_the_table_when_an_edit_is_broken() {
        let dir = temp_dir();
        let file = dir.join("tokens");
        write(&file, &format!("{} alice\n", hex("old")));
        let auth = StaticTokenAuthenticator::new(&settings(&file, Duration::from_millis(50))).unwrap();
        assert_eq!(outcome(&auth, "old").await.error, AuthenticationError::NoError);

        write(&file, &format!("{} bob\n", hex("new")));
        eventually(&auth, "new", AuthenticationError::NoError).await;
        assert_eq!(outcome(&auth, "old").await.error, AuthenticationError::AuthenticationFailed);

        // Same length, same second: only the content tells.
        write(&file, &format!("{} bob\n", hex("neW")));
        eventually(&auth, "neW", AuthenticationError::NoError).await;

        // A broken edit: the previous table stays.
        write(&file, &format!("{} carol\nbroken\n", hex("newer")));
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(outcome(&auth, "neW").await.error, AuthenticationError::NoError);
        assert_eq!(outcome(&auth, "newer").await.error, AuthenticationError::AuthenticationFailed);

        // A removed file: the previous table stays too.
        std::fs::remove_file(&file).unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(outcome(&auth, "neW").await.error, AuthenticationError::NoError);

        // Fixed again: loaded.
        write(&file, &format!("{} carol\n", hex("newer")));
        eventually(&auth, "newer", AuthenticationError::NoError).await;
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test]
    async fn reload_reads_at_once_and_reports_a_broken_file() {
        let dir = temp_dir();
        let file = dir.join("tokens");
        write(&file, &format!("{} alice\n", hex("one")));
        let auth = StaticTokenAuthenticator::new(&settings(&file, Duration::from_secs(3600))).unwrap();
        write(&file, &format!("{} alice\n{} bob\n", hex("one"), hex("two")));
        auth.reload().unwrap();
        assert_eq!(outcome(&auth, "two").await, Verdict::accept(Some("bob".into())));

        write(&file, &format!("{} alice\n\n\nsecret-pasted-here\n", hex("three")));
        let error = auth.reload().unwrap_err();
        assert!(error.contains("line 4:"), "{error}");
        assert!(!error.contains("secret-pasted-here"), "{error}");
        assert_eq!(outcome(&auth, "two").await.error, AuthenticationError::NoError);
        assert_eq!(outcome(&auth, "three").await.error, AuthenticationError::AuthenticationFailed);

        std::fs::remove_file(&file).unwrap();
        assert!(auth.reload().unwrap_err().contains("cannot read"));
        assert_eq!(outcome(&auth, "two").await.error, AuthenticationError::NoError);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn built_outside_a_runtime_the_first_authentication_starts_the_watcher_and_catches_up() {
        let dir = temp_dir();
        let file = dir.join("tokens");
        write(&file, &format!("{} alice\n", hex("before")));
        let auth = StaticTokenAuthenticator::new(&settings(&file, Duration::from_millis(50))).unwrap();
        // Changed before the runtime (and the watcher) exist.
        write(&file, &format!("{} bob\n", hex("after")));
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            assert_eq!(outcome(&auth, "after").await, Verdict::accept(Some("bob".into())));
            assert!(auth.watcher.lock().unwrap().is_some());
            write(&file, &format!("{} carol\n", hex("later")));
            eventually(&auth, "later", AuthenticationError::NoError).await;
        });
        drop(runtime);
        // A new runtime: the dead watcher is replaced.
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            write(&file, &format!("{} dave\n", hex("again")));
            eventually(&auth, "again", AuthenticationError::NoError).await;
        });
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test]
    async fn the_watcher_stops_when_the_authenticator_is_dropped() {
        let dir = temp_dir();
        let file = dir.join("tokens");
        write(&file, &format!("{} alice\n", hex("t")));
        let auth = StaticTokenAuthenticator::new(&settings(&file, Duration::from_secs(3600))).unwrap();
        let task = auth.watcher.lock().unwrap().as_ref().unwrap().task.abort_handle();
        let shared = Arc::downgrade(&auth.shared);
        assert!(!task.is_finished());
        drop(auth);
        tokio::time::timeout(Duration::from_secs(5), async {
            while !task.is_finished() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("the watcher stops");
        assert!(shared.upgrade().is_none());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
