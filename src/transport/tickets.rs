//! TLS session tickets (stateless resumption, TLS 1.2 and 1.3) whose keys survive a restart.
//!
//! When a broker restarts, its whole fleet reconnects at once; a device that still holds a ticket
//! resumes its session instead of paying a full handshake (no certificate signature on the
//! broker's side), but only if the broker can still read the ticket. rustls' own ticketer keeps
//! its keys in memory, so every ticket dies with the process, and the one storm that matters
//! gains nothing. This ticketer keeps its keys in a file (mode 0600, replaced atomically) and
//! rotates them:
//!
//! * a key encrypts new tickets for one rotation period after it was made, and
//! * decrypts tickets until two periods after it was made,
//!
//! so a ticket is good for at least one period and at most two (the lifetime the client is told),
//! and no key older than two periods can open anything, even after a long downtime. Rotation
//! happens lazily, at the first ticket after the period ended, under a write lock; every other
//! ticket takes a read lock. Tickets are AES-256-GCM (ring) over rustls' session state, with the
//! key's random name in front, authenticated as associated data.
//!
//! Nothing here logs key material, and `Debug` shows none.

use std::fmt;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use rustls::ServerConfig;
use rustls::server::{NoServerSessionStorage, ProducesTickets};
use tracing::{info, warn};

use crate::config::TlsSettings;

/// First line of the key file, so a wrong file is recognised.
const HEADER: &str = "# remoteproxy TLS session ticket keys v1: created (unix ms) name secret";

const NAME_LEN: usize = 16;
const SECRET_LEN: usize = 32;
const TAG_LEN: usize = 16;

/// One ticket key.
struct Key {
    name: [u8; NAME_LEN],
    secret: [u8; SECRET_LEN],
    aead: LessSafeKey,
    /// When it was made, in Unix milliseconds.
    created: u64,
}

impl Key {
    fn new(name: [u8; NAME_LEN], secret: [u8; SECRET_LEN], created: u64) -> Key {
        let unbound = UnboundKey::new(&AES_256_GCM, &secret).expect("a 32-byte AES-256 key");
        Key { name, secret, aead: LessSafeKey::new(unbound), created }
    }

    fn generate(rng: &SystemRandom, created: u64) -> Key {
        let (mut name, mut secret) = ([0u8; NAME_LEN], [0u8; SECRET_LEN]);
        rng.fill(&mut name).expect("the system random source works");
        rng.fill(&mut secret).expect("the system random source works");
        Key::new(name, secret, created)
    }
}

/// The keys, newest first (at most two are useful), and whether the file could be written.
struct State {
    keys: Vec<Key>,
    persisting: bool,
}

/// The broker's ticketer (see the module doc).
pub struct Ticketer {
    state: RwLock<State>,
    /// The rotation period in milliseconds.
    period: u64,
    file: Option<PathBuf>,
    rng: SystemRandom,
}

impl fmt::Debug for Ticketer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ticketer").field("period_ms", &self.period).field("file", &self.file).finish()
    }
}

/// Sets up resumption on the TLS listeners' configuration as `[SSL]` says: this ticketer with
/// `sessionResumption` (opening or creating `ticketKeyFile`), no resumption at all without.
pub fn configure(config: &mut ServerConfig, settings: &TlsSettings) {
    if settings.session_resumption {
        let file = settings.ticket_key_file.as_deref();
        config.ticketer = Arc::new(Ticketer::open(file, settings.ticket_key_rotation));
    } else {
        config.session_storage = Arc::new(NoServerSessionStorage {});
        config.send_tls13_tickets = 0;
    }
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

impl Ticketer {
    /// A ticketer rotating every `period`, keeping its keys in `file` (in memory only when `None`,
    /// or when the file cannot be written: logged once, the broker still resumes sessions until
    /// it restarts).
    pub fn open(file: Option<&Path>, period: Duration) -> Ticketer {
        Self::open_at(file, period, now_ms())
    }

    fn open_at(file: Option<&Path>, period: Duration, now: u64) -> Ticketer {
        let period = (period.as_millis() as u64).max(1);
        let mut keys = match file.map(read_keys) {
            Some(Ok(keys)) => keys,
            Some(Err(error)) if error.kind() == io::ErrorKind::NotFound => Vec::new(),
            Some(Err(error)) => {
                warn!(
                    file = %file.expect("read from a file").display(),
                    %error,
                    "TLS session tickets: the ticket key file is unreadable; starting with new keys"
                );
                Vec::new()
            }
            None => Vec::new(),
        };
        keys.retain(|key| now < key.created.saturating_add(2 * period));
        keys.sort_by_key(|key| std::cmp::Reverse(key.created));
        keys.truncate(2);
        let resumed = !keys.is_empty();
        let ticketer = Ticketer {
            state: RwLock::new(State { keys, persisting: true }),
            period,
            file: file.map(Path::to_path_buf),
            rng: SystemRandom::new(),
        };
        {
            let mut state = ticketer.state.write().unwrap_or_else(|e| e.into_inner());
            if state.keys.is_empty() {
                let key = Key::generate(&ticketer.rng, now);
                state.keys.push(key);
            }
            ticketer.persist(&mut state);
        }
        if let Some(file) = &ticketer.file {
            let kept = if resumed { "kept from before" } else { "new" };
            info!(file = %file.display(), "TLS session tickets: keys {kept}");
        }
        ticketer
    }

    /// Writes the keys to the file, warning once when that starts failing.
    fn persist(&self, state: &mut State) {
        let Some(file) = &self.file else { return };
        match write_keys(file, &state.keys) {
            Ok(()) => state.persisting = true,
            // No state directory (a broker run from a build tree on its defaults): the usual
            // case there, not a fault.
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                if state.persisting {
                    info!(
                        file = %file.display(),
                        "TLS session tickets: the ticket key file's directory does not exist, so the keys live in memory and tickets will not survive a restart"
                    );
                }
                state.persisting = false;
            }
            Err(error) => {
                if state.persisting {
                    warn!(
                        file = %file.display(),
                        %error,
                        "TLS session tickets: cannot keep the ticket keys in this file, so tickets will not survive a restart; make it writable or set [SSL] ticketKeyFile"
                    );
                }
                state.persisting = false;
            }
        }
    }

    fn encrypt_at(&self, plain: &[u8], now: u64) -> Option<Vec<u8>> {
        {
            let state = self.state.read().unwrap_or_else(|e| e.into_inner());
            if let Some(key) = state.keys.first().filter(|key| now < key.created.saturating_add(self.period))
            {
                return self.seal(key, plain);
            }
        }
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        if state.keys.first().is_none_or(|key| now >= key.created.saturating_add(self.period)) {
            state.keys.insert(0, Key::generate(&self.rng, now));
            state.keys.truncate(2);
            let period = self.period;
            state.keys.retain(|key| now < key.created.saturating_add(2 * period));
            self.persist(&mut state);
        }
        self.seal(&state.keys[0], plain)
    }

    fn seal(&self, key: &Key, plain: &[u8]) -> Option<Vec<u8>> {
        let mut nonce = [0u8; NONCE_LEN];
        self.rng.fill(&mut nonce).ok()?;
        let mut out = Vec::with_capacity(NAME_LEN + NONCE_LEN + plain.len() + TAG_LEN);
        out.extend_from_slice(&key.name);
        out.extend_from_slice(&nonce);
        let mut sealed = plain.to_vec();
        key.aead
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(&key.name), &mut sealed)
            .ok()?;
        out.extend_from_slice(&sealed);
        Some(out)
    }

    fn decrypt_at(&self, ticket: &[u8], now: u64) -> Option<Vec<u8>> {
        if ticket.len() < NAME_LEN + NONCE_LEN + TAG_LEN {
            return None;
        }
        let (name, rest) = ticket.split_at(NAME_LEN);
        let (nonce, sealed) = rest.split_at(NONCE_LEN);
        let state = self.state.read().unwrap_or_else(|e| e.into_inner());
        let key = state
            .keys
            .iter()
            .find(|key| key.name == name && now < key.created.saturating_add(2 * self.period))?;
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut sealed = sealed.to_vec();
        let plain = key.aead.open_in_place(nonce, Aad::from(&key.name), &mut sealed).ok()?;
        Some(plain.to_vec())
    }
}

impl ProducesTickets for Ticketer {
    fn enabled(&self) -> bool {
        true
    }

    /// What the client is told: two periods, the longest a ticket can open (its key may give out
    /// sooner, after one period at the least; the client then simply does a full handshake).
    /// TLS 1.3 allows at most seven days.
    fn lifetime(&self) -> u32 {
        u32::try_from(2 * self.period / 1000).unwrap_or(u32::MAX).clamp(1, 604_800)
    }

    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        self.encrypt_at(plain, now_ms())
    }

    fn decrypt(&self, ticket: &[u8]) -> Option<Vec<u8>> {
        self.decrypt_at(ticket, now_ms())
    }
}

fn read_keys(file: &Path) -> io::Result<Vec<Key>> {
    let text = std::fs::read_to_string(file)?;
    let invalid = || io::Error::new(io::ErrorKind::InvalidData, "not a remoteproxy ticket key file");
    let mut lines = text.lines();
    if lines.next() != Some(HEADER) {
        return Err(invalid());
    }
    lines
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            let mut fields = line.split_whitespace();
            let created = fields.next().and_then(|f| f.parse().ok()).ok_or_else(invalid)?;
            let name = fields.next().and_then(hex::<NAME_LEN>).ok_or_else(invalid)?;
            let secret = fields.next().and_then(hex::<SECRET_LEN>).ok_or_else(invalid)?;
            Ok(Key::new(name, secret, created))
        })
        .collect()
}

fn hex<const N: usize>(text: &str) -> Option<[u8; N]> {
    if text.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// Replaces the file atomically with the keys, readable by the broker's user only.
fn write_keys(file: &Path, keys: &[Key]) -> io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut text = format!("{HEADER}\n");
    for key in keys {
        let name: String = key.name.iter().map(|b| format!("{b:02x}")).collect();
        let secret: String = key.secret.iter().map(|b| format!("{b:02x}")).collect();
        text.push_str(&format!("{} {name} {secret}\n", key.created));
    }
    let mut temporary = file.as_os_str().to_owned();
    temporary.push(".new");
    let temporary = PathBuf::from(temporary);
    let _ = std::fs::remove_file(&temporary);
    let mut out = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&temporary)?;
    out.write_all(text.as_bytes())?;
    out.sync_all()?;
    drop(out);
    std::fs::rename(&temporary, file)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    const HOUR: u64 = 3_600_000;

    fn period() -> Duration {
        Duration::from_millis(HOUR)
    }

    #[test]
    fn a_ticket_opens_for_at_least_one_period_and_at_most_two() {
        let ticketer = Ticketer::open_at(None, period(), 0);
        let ticket = ticketer.encrypt_at(b"session", 10).unwrap();
        assert_eq!(ticketer.decrypt_at(&ticket, 20).unwrap(), b"session");
        // After the rotation (a new ticket made a new key) the old key still opens its tickets…
        let newer = ticketer.encrypt_at(b"later", HOUR + 5).unwrap();
        assert_ne!(newer[..NAME_LEN], ticket[..NAME_LEN], "rotated");
        assert_eq!(ticketer.decrypt_at(&ticket, 2 * HOUR - 1).unwrap(), b"session");
        // …until two periods after it was made.
        assert!(ticketer.decrypt_at(&ticket, 2 * HOUR).is_none());
        assert_eq!(ticketer.decrypt_at(&newer, 2 * HOUR).unwrap(), b"later");
        assert_eq!(ticketer.lifetime(), 7200);
    }

    #[test]
    fn forged_and_damaged_tickets_do_not_open() {
        let ticketer = Ticketer::open_at(None, period(), 0);
        let ticket = ticketer.encrypt_at(b"session", 0).unwrap();
        for at in [0, NAME_LEN, NAME_LEN + NONCE_LEN, ticket.len() - 1] {
            let mut bad = ticket.clone();
            bad[at] ^= 1;
            assert!(ticketer.decrypt_at(&bad, 1).is_none(), "flipped byte {at}");
        }
        assert!(ticketer.decrypt_at(&ticket[..20], 1).is_none());
        let other = Ticketer::open_at(None, period(), 0);
        assert!(other.decrypt_at(&ticket, 1).is_none());
    }

    #[test]
    fn keys_survive_a_restart_in_a_private_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("ticket-keys");
        let first = Ticketer::open_at(Some(&file), period(), 0);
        let ticket = first.encrypt_at(b"session", 100).unwrap();
        drop(first);
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(text.starts_with(HEADER));

        let second = Ticketer::open_at(Some(&file), period(), HOUR / 2);
        assert_eq!(second.decrypt_at(&ticket, HOUR / 2).unwrap(), b"session");
        // A rotation after the restart is written too, and the key of before still opens.
        let newer = second.encrypt_at(b"later", HOUR + 1).unwrap();
        let third = Ticketer::open_at(Some(&file), period(), HOUR + 2);
        assert_eq!(third.decrypt_at(&ticket, HOUR + 2).unwrap(), b"session");
        assert_eq!(third.decrypt_at(&newer, HOUR + 2).unwrap(), b"later");
        // Keys too old to open anything are dropped at start.
        let late = Ticketer::open_at(Some(&file), period(), 3 * HOUR + 3);
        assert!(late.decrypt_at(&newer, 3 * HOUR + 3).is_none());
        assert_eq!(late.state.read().unwrap().keys.len(), 1);
    }

    #[test]
    fn an_unusable_file_means_keys_in_memory() {
        let dir = tempfile::tempdir().unwrap();
        let garbage = dir.path().join("garbage");
        std::fs::write(&garbage, "not keys\n").unwrap();
        let ticketer = Ticketer::open_at(Some(&garbage), period(), 0);
        let ticket = ticketer.encrypt_at(b"s", 0).unwrap();
        assert_eq!(ticketer.decrypt_at(&ticket, 1).unwrap(), b"s");
        // It was replaced by a good one.
        assert!(std::fs::read_to_string(&garbage).unwrap().starts_with(HEADER));

        let unwritable = dir.path().join("missing-directory").join("ticket-keys");
        let ticketer = Ticketer::open_at(Some(&unwritable), period(), 0);
        assert!(!ticketer.state.read().unwrap().persisting);
        let ticket = ticketer.encrypt_at(b"s", 0).unwrap();
        assert_eq!(ticketer.decrypt_at(&ticket, 1).unwrap(), b"s");
    }

    #[test]
    fn debug_shows_no_key() {
        let ticketer = Ticketer::open_at(None, period(), 0);
        let shown = format!("{ticketer:?}");
        let secret: String =
            ticketer.state.read().unwrap().keys[0].secret.iter().map(|b| format!("{b:02x}")).collect();
        assert!(!shown.contains(&secret) && !shown.contains("secret"), "{shown}");
    }
}
