//! The statistics log (`[ProxyServer] logEngineEnabled`): one JSON line per finished v1 tunnel
//! in `statisticsLogFile`, and the totals kept across restarts in `statisticsStateFile`.
//!
//! A line looks like this (one line in the file; fields in any order):
//!
//! ```json
//! {"start":"2024-05-01T10:00:00.000Z","end":"2024-05-01T10:05:00.250Z","duration":300.25,
//!  "outcome":"closed","bytesFirstToSecond":1024,"bytesSecondToFirst":2048,
//!  "users":["alice",null],"transports":["TCP","WebSocket"]}
//! ```
//!
//! Times are RFC 3339 in UTC with milliseconds, `duration` is in seconds, "first" is the client
//! that waited and "second" the one that joined, `outcome` says why the tunnel ended (`closed`,
//! `failed`, `idle`, `shutdown`), `users` are the user names the authenticator gave (`null`
//! when none). No token, uuid or address is ever written.
//!
//! Lines go to a writer thread through a bounded queue, so a slow disk never stalls a tunnel:
//! when the queue is full a line is dropped and a warning says so. The state file is a small
//! JSON object with the totals (`clients`, `tunnels`, `traffic`, `tunnelProxyClients`,
//! `tunnelProxyTraffic`), rewritten atomically (temporary file, then rename) at most once a
//! minute when the totals changed, and once more on shutdown. (The reference rewrote its
//! settings file on every forwarded chunk and kept only one of its totals.) A state file that
//! cannot be parsed is moved aside to `<name>.corrupt` and the totals start from zero.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::time::{Duration, SystemTime};

use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::stats::{Stats, StatsSink, Totals, TunnelRecord};

/// How often the state file may be rewritten at most.
pub const SAVE_INTERVAL: Duration = Duration::from_secs(60);
/// Lines waiting for the writer thread; beyond this, lines are dropped.
const QUEUE: usize = 4096;
/// How long shutdown waits for the last lines and the state file.
const FINAL_WRITE_LIMIT: Duration = Duration::from_secs(10);
/// Permissions of the files created here: user names are not for everyone.
const MODE: u32 = 0o640;

enum Message {
    Line(String),
    Flush(mpsc::Sender<()>),
}

/// The statistics log and state file.
pub struct StatisticsLog {
    log_file: PathBuf,
    state_file: PathBuf,
    saved: Totals,
    /// Why the state file could not be parsed; reported (and the file moved aside) when
    /// [`persist`](Self::persist) starts: logging is not set up yet at `open`, and
    /// `--check-config` must not move files.
    corrupt: std::sync::Mutex<Option<String>>,
    lines: SyncSender<Message>,
    dropped: AtomicU64,
}

impl std::fmt::Debug for StatisticsLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StatisticsLog")
            .field("log_file", &self.log_file)
            .field("state_file", &self.state_file)
            .finish_non_exhaustive()
    }
}

fn with_path(path: &Path, error: io::Error) -> io::Error {
    io::Error::new(error.kind(), format!("{}: {error}", path.display()))
}

fn create_parent(path: &Path) -> io::Result<()> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => fs::create_dir_all(dir).map_err(|e| with_path(dir, e)),
        _ => Ok(()),
    }
}

impl StatisticsLog {
    /// Opens `log_file` for appending and reads the totals from `state_file` (zero when it does
    /// not exist or cannot be parsed), creating the directories of both. Fails when the log
    /// cannot be opened or the state file exists but cannot be read.
    pub fn open(log_file: &Path, state_file: &Path) -> io::Result<Arc<StatisticsLog>> {
        create_parent(log_file)?;
        create_parent(state_file)?;
        let file = OpenOptions::new()
            .append(true)
            .create(true)
            .mode(MODE)
            .open(log_file)
            .map_err(|e| with_path(log_file, e))?;
        let (saved, corrupt) = match read_state(state_file)? {
            Ok(totals) => (totals, None),
            Err(problem) => (Totals::default(), Some(problem)),
        };
        let (lines, queue) = mpsc::sync_channel(QUEUE);
        let path = log_file.to_path_buf();
        std::thread::Builder::new()
            .name("statistics-log".into())
            .spawn(move || write_lines(file, &path, queue))
            .map_err(|e| io::Error::new(e.kind(), format!("cannot start the statistics log writer: {e}")))?;
        Ok(Arc::new(StatisticsLog {
            log_file: log_file.to_path_buf(),
            state_file: state_file.to_path_buf(),
            saved,
            corrupt: std::sync::Mutex::new(corrupt),
            lines,
            dropped: AtomicU64::new(0),
        }))
    }

    /// The totals read from the state file at [`open`](Self::open).
    pub fn saved_totals(&self) -> Totals {
        self.saved
    }

    /// Keeps the state file up to date with `stats`' totals until `stop`, then writes the last
    /// lines and the totals once more.
    pub async fn persist(self: Arc<Self>, stats: Arc<Stats>, stop: CancellationToken) {
        self.persist_every(stats, stop, SAVE_INTERVAL).await
    }

    async fn persist_every(self: Arc<Self>, stats: Arc<Stats>, stop: CancellationToken, period: Duration) {
        self.set_corrupt_state_aside();
        let mut saved = self.saved;
        let mut interval = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = interval.tick() => {
                    let totals = stats.totals();
                    if totals != saved && self.save(totals).await {
                        saved = totals;
                    }
                }
            }
        }
        let totals = stats.totals();
        let this = self.clone();
        let last = tokio::task::spawn_blocking(move || {
            this.flush(FINAL_WRITE_LIMIT);
            if totals != saved {
                this.write_state_logged(totals);
            }
        });
        if tokio::time::timeout(FINAL_WRITE_LIMIT, last).await.is_err() {
            warn!(path = %self.state_file.display(), "statistics: the final write did not finish in time");
        }
    }

    /// Moves a state file that could not be parsed to `<name>.corrupt`, so the first save does
    /// not destroy what an operator may want to look at, and says so.
    fn set_corrupt_state_aside(&self) {
        let Some(problem) = self.corrupt.lock().unwrap_or_else(|e| e.into_inner()).take() else { return };
        let mut aside = self.state_file.as_os_str().to_owned();
        aside.push(".corrupt");
        let aside = PathBuf::from(aside);
        let moved = match fs::rename(&self.state_file, &aside) {
            Ok(()) => aside.display().to_string(),
            Err(error) => format!("(not moved: {error})"),
        };
        warn!(
            path = %self.state_file.display(),
            problem,
            moved_to = %moved,
            "statistics state file cannot be read; the totals start from zero"
        );
    }

    async fn save(self: &Arc<Self>, totals: Totals) -> bool {
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.write_state_logged(totals)).await.unwrap_or(false)
    }

    fn write_state_logged(&self, totals: Totals) -> bool {
        match write_state(&self.state_file, totals) {
            Ok(()) => {
                debug!(path = %self.state_file.display(), "statistics totals saved");
                true
            }
            Err(error) => {
                warn!(path = %self.state_file.display(), %error, "statistics: cannot save the totals");
                false
            }
        }
    }

    /// Waits (up to `limit`) until every line queued so far is written and flushed.
    fn flush(&self, limit: Duration) -> bool {
        let (done, wait) = mpsc::channel();
        if self.lines.send(Message::Flush(done)).is_err() {
            return false;
        }
        wait.recv_timeout(limit).is_ok()
    }
}

impl StatsSink for StatisticsLog {
    fn tunnel_closed(&self, record: &TunnelRecord) {
        match self.lines.try_send(Message::Line(line(record))) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                if dropped.is_power_of_two() {
                    warn!(dropped, "statistics log: the disk does not keep up; lines dropped");
                }
            }
            Err(TrySendError::Disconnected(_)) => {
                let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                if dropped.is_power_of_two() {
                    warn!(dropped, "statistics log: the writer stopped; lines dropped");
                }
            }
        }
    }
}

/// The log line of a finished tunnel (without the newline).
pub fn line(record: &TunnelRecord) -> String {
    let duration = record.duration().as_millis() as f64 / 1000.0;
    json!({
        "start": rfc3339(record.start),
        "end": rfc3339(record.end),
        "duration": duration,
        "outcome": record.reason,
        "bytesFirstToSecond": record.first.bytes_sent,
        "bytesSecondToFirst": record.second.bytes_sent,
        "users": [record.first.user_name, record.second.user_name],
        "transports": [record.first.transport.as_str(), record.second.transport.as_str()],
    })
    .to_string()
}

/// `time` as RFC 3339 in UTC with milliseconds, e.g. `2024-05-01T10:00:00.250Z`.
pub fn rfc3339(time: SystemTime) -> String {
    const FORMAT: &[time::format_description::BorrowedFormatItem<'_>] = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    time::OffsetDateTime::from(time).format(FORMAT).unwrap_or_default()
}

fn write_lines(file: File, path: &Path, queue: Receiver<Message>) {
    let mut out = BufWriter::new(file);
    let mut failing = false;
    let report = |result: io::Result<()>, failing: &mut bool| match result {
        Ok(()) => {
            if std::mem::take(failing) {
                info!(path = %path.display(), "statistics log: writing again");
            }
        }
        Err(error) => {
            if !std::mem::replace(failing, true) {
                warn!(path = %path.display(), %error, "statistics log: cannot write");
            }
        }
    };
    while let Ok(first) = queue.recv() {
        let mut next = Some(first);
        let mut acks = Vec::new();
        // Write everything queued, then flush once.
        while let Some(message) = next {
            match message {
                Message::Line(mut line) => {
                    line.push('\n');
                    let result = out.write_all(line.as_bytes());
                    report(result, &mut failing);
                }
                Message::Flush(ack) => acks.push(ack),
            }
            next = queue.try_recv().ok();
        }
        let result = out.flush();
        report(result, &mut failing);
        for ack in acks {
            let _ = ack.send(());
        }
    }
    let _ = out.flush();
}

/// The state file's content.
fn state_json(totals: Totals) -> Value {
    json!({
        "clients": totals.clients,
        "tunnels": totals.tunnels,
        "traffic": totals.traffic,
        "tunnelProxyClients": totals.tunnel_proxy_clients,
        "tunnelProxyTraffic": totals.tunnel_proxy_traffic,
        "saved": rfc3339(SystemTime::now()),
    })
}

fn parse_state(text: &str) -> Result<Totals, String> {
    let value: Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let object = value.as_object().ok_or("not a JSON object")?;
    let count = |name: &str| match object.get(name) {
        None => Ok(0),
        Some(value) => value.as_u64().ok_or_else(|| format!("{name} is not a count: {value}")),
    };
    Ok(Totals {
        clients: count("clients")?,
        tunnels: count("tunnels")?,
        traffic: count("traffic")?,
        tunnel_proxy_clients: count("tunnelProxyClients")?,
        tunnel_proxy_traffic: count("tunnelProxyTraffic")?,
    })
}

/// The saved totals: zero when there is no state file, `Err(problem)` when it cannot be parsed;
/// fails when it cannot be read.
fn read_state(path: &Path) -> io::Result<Result<Totals, String>> {
    match fs::read(path) {
        Ok(bytes) => Ok(std::str::from_utf8(&bytes).map_err(|e| e.to_string()).and_then(parse_state)),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(Ok(Totals::default())),
        Err(error) => Err(with_path(path, error)),
    }
}

fn write_state(path: &Path, totals: Totals) -> io::Result<()> {
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".tmp");
    let temporary = PathBuf::from(temporary);
    let mut file = OpenOptions::new().write(true).create(true).truncate(true).mode(MODE).open(&temporary)?;
    file.write_all(format!("{}\n", state_json(totals)).as_bytes())?;
    file.sync_all()?;
    drop(file);
    fs::rename(&temporary, path)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
        && let Ok(dir) = File::open(dir)
    {
        let _ = dir.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::{Api, TunnelSide};
    use remoteproxy_authenticators::{PeerAddress, Transport};
    use std::time::UNIX_EPOCH;

    fn record() -> TunnelRecord {
        let start = UNIX_EPOCH + Duration::from_millis(1_700_000_000_250);
        TunnelRecord {
            start,
            end: start + Duration::from_millis(61_500),
            first: TunnelSide {
                transport: Transport::Tcp,
                user_name: Some("alice".into()),
                bytes_sent: 1024,
            },
            second: TunnelSide { transport: Transport::WebSocket, user_name: None, bytes_sent: 7 },
            reason: "closed",
        }
    }

    #[test]
    fn times_are_rfc3339_utc() {
        let at = |ms: u64| rfc3339(UNIX_EPOCH + Duration::from_millis(ms));
        assert_eq!(at(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(at(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(at(1_700_000_000_250), "2023-11-14T22:13:20.250Z");
        assert_eq!(at(4_102_444_799_999), "2099-12-31T23:59:59.999Z");
        assert_eq!(at(1_709_251_199_000), "2024-02-29T23:59:59.000Z");
    }

    #[test]
    fn a_line_has_every_field_and_nothing_else() {
        let value: Value = serde_json::from_str(&line(&record())).unwrap();
        assert_eq!(
            value,
            json!({
                "start": "2023-11-14T22:13:20.250Z",
                "end": "2023-11-14T22:14:21.750Z",
                "duration": 61.5,
                "outcome": "closed",
                "bytesFirstToSecond": 1024,
                "bytesSecondToFirst": 7,
                "users": ["alice", null],
                "transports": ["TCP", "WebSocket"],
            })
        );
        assert!(!line(&record()).contains('\n'));
    }

    #[test]
    fn lines_are_appended_and_directories_created() {
        let dir = tempfile::tempdir().unwrap();
        let log_file = dir.path().join("log/sub/statistics.log");
        let state_file = dir.path().join("state/statistics.json");
        std::fs::create_dir_all(log_file.parent().unwrap()).unwrap();
        std::fs::write(&log_file, "{\"earlier\":true}\n").unwrap();
        let log = StatisticsLog::open(&log_file, &state_file).unwrap();
        assert_eq!(log.saved_totals(), Totals::default());
        log.tunnel_closed(&record());
        log.tunnel_closed(&record());
        assert!(log.flush(Duration::from_secs(10)));
        let text = std::fs::read_to_string(&log_file).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert_eq!(lines[0], "{\"earlier\":true}");
        assert_eq!(lines[1], line(&record()));
        assert!(state_file.parent().unwrap().is_dir());
    }

    #[test]
    fn state_round_trips_and_bad_state_starts_from_zero() {
        let dir = tempfile::tempdir().unwrap();
        let state_file = dir.path().join("statistics.json");
        let totals =
            Totals { clients: 1, tunnels: 2, traffic: 3, tunnel_proxy_clients: 4, tunnel_proxy_traffic: 5 };
        write_state(&state_file, totals).unwrap();
        assert_eq!(read_state(&state_file).unwrap(), Ok(totals));
        assert!(!dir.path().join("statistics.json.tmp").exists());

        for bad in ["", "not json", "[1,2]", "{\"traffic\":-1}", "{\"clients\":\"many\"}", "\u{0}\u{1}"] {
            std::fs::write(&state_file, bad).unwrap();
            let log = StatisticsLog::open(&dir.path().join("statistics.log"), &state_file).unwrap();
            assert_eq!(log.saved_totals(), Totals::default(), "{bad:?}");
            assert!(state_file.exists(), "{bad:?}: opening moves nothing");
            log.set_corrupt_state_aside();
            assert!(!state_file.exists(), "{bad:?}: moved aside");
            assert_eq!(std::fs::read_to_string(dir.path().join("statistics.json.corrupt")).unwrap(), bad);
        }
        // Missing fields count as zero; unknown ones are ignored.
        std::fs::write(&state_file, "{\"traffic\": 9, \"other\": \"x\"}").unwrap();
        assert_eq!(read_state(&state_file).unwrap(), Ok(Totals { traffic: 9, ..Totals::default() }));
    }

    fn read_totals(path: &Path) -> Option<Totals> {
        std::fs::read_to_string(path).ok().map(|text| parse_state(&text).unwrap())
    }

    #[tokio::test]
    async fn the_state_file_is_written_when_changed_and_on_stop() {
        let dir = tempfile::tempdir().unwrap();
        let state_file = dir.path().join("statistics.json");
        let saved = Totals { traffic: 100, tunnels: 1, ..Totals::default() };
        write_state(&state_file, saved).unwrap();
        let log = StatisticsLog::open(&dir.path().join("statistics.log"), &state_file).unwrap();
        let stats = Stats::new("test", vec![log.clone()]);
        stats.restore_totals(log.saved_totals());
        let modified = || std::fs::metadata(&state_file).unwrap().modified().unwrap();
        let before = modified();

        let stop = CancellationToken::new();
        let task =
            tokio::spawn(log.clone().persist_every(stats.clone(), stop.clone(), Duration::from_millis(50)));
        // Unchanged totals are not written again.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(modified(), before);

        let _conn = stats.open(1, Api::V2, PeerAddress::Unix, Transport::Unix);
        stats.relayed(Api::V1, 20);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while read_totals(&state_file).unwrap().traffic != 120 {
            assert!(std::time::Instant::now() < deadline, "the changed totals were never saved");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(
            read_totals(&state_file).unwrap(),
            Totals { traffic: 120, tunnel_proxy_clients: 1, ..saved }
        );

        stats.relayed(Api::V2, 5);
        stop.cancel();
        tokio::time::timeout(Duration::from_secs(10), task).await.unwrap().unwrap();
        assert_eq!(
            read_totals(&state_file).unwrap(),
            Totals { traffic: 120, tunnel_proxy_clients: 1, tunnel_proxy_traffic: 5, ..saved }
        );
    }

    #[tokio::test]
    async fn stop_flushes_the_log_and_saves_even_before_the_first_period() {
        let dir = tempfile::tempdir().unwrap();
        let (log_file, state_file) = (dir.path().join("statistics.log"), dir.path().join("statistics.json"));
        let log = StatisticsLog::open(&log_file, &state_file).unwrap();
        let stats = Stats::new("test", vec![log.clone()]);
        let stop = CancellationToken::new();
        let task = tokio::spawn(log.clone().persist(stats.clone(), stop.clone()));
        stats.relayed(Api::V1, 3);
        stats.tunnel_closed(&record());
        stop.cancel();
        tokio::time::timeout(Duration::from_secs(10), task).await.unwrap().unwrap();
        assert_eq!(read_totals(&state_file).unwrap(), Totals { traffic: 3, ..Totals::default() });
        assert_eq!(std::fs::read_to_string(&log_file).unwrap(), format!("{}\n", line(&record())));
        use std::os::unix::fs::PermissionsExt;
        for file in [&log_file, &state_file] {
            let mode = std::fs::metadata(file).unwrap().permissions().mode();
            assert_eq!(mode & 0o777 & !MODE, 0, "{}: {mode:o}", file.display());
        }
    }

    #[tokio::test]
    async fn nothing_happened_nothing_written() {
        let dir = tempfile::tempdir().unwrap();
        let state_file = dir.path().join("statistics.json");
        let log = StatisticsLog::open(&dir.path().join("statistics.log"), &state_file).unwrap();
        let stats = Stats::new("test", vec![log.clone()]);
        let stop = CancellationToken::new();
        stop.cancel();
        log.persist(stats, stop).await;
        assert!(!state_file.exists());
    }
}
