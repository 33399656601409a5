//! Readings of another process from `/proc/<pid>`: resident memory, open file descriptors, CPU
//! time. The broker and every baseline are separate processes, so the same readings work for
//! both.

use std::collections::HashMap;
use std::io;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// `/proc/<pid>/stat` counts CPU time in USER_HZ ticks, which is 100 on every Linux ABI.
const TICK: Duration = Duration::from_millis(10);

/// One reading of a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sample {
    /// `VmRSS` of `/proc/<pid>/status`, in KiB.
    pub rss_kib: u64,
    /// Entries of `/proc/<pid>/fd`.
    pub fds: u64,
}

/// Reads RSS and the number of open file descriptors of `pid`.
pub fn sample(pid: u32) -> io::Result<Sample> {
    Ok(Sample { rss_kib: rss_kib(pid)?, fds: fd_count(pid)? })
}

/// `VmRSS` in KiB.
pub fn rss_kib(pid: u32) -> io::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    parse_rss_kib(&status).ok_or_else(|| io::Error::other(format!("no VmRSS line in /proc/{pid}/status")))
}

/// Number of open file descriptors.
pub fn fd_count(pid: u32) -> io::Result<u64> {
    Ok(std::fs::read_dir(format!("/proc/{pid}/fd"))?.count() as u64)
}

/// User plus system CPU time consumed so far (all threads), with 10 ms resolution.
pub fn cpu_time(pid: u32) -> io::Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    parse_cpu_ticks(&stat)
        .map(|ticks| TICK * ticks as u32)
        .ok_or_else(|| io::Error::other(format!("cannot parse /proc/{pid}/stat")))
}

fn parse_rss_kib(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// utime + stime: fields 14 and 15, counted after the parenthesised command name (which may
/// itself contain spaces and parentheses, hence the last `)`).
fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state), so field n is at index n - 3.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// CPU time of each live thread of `pid`, in ns, from `/proc/<pid>/task/<tid>/schedstat` (the
/// scheduler's own accounting: nanosecond resolution, where `stat` has 10 ms ticks).
fn thread_cpu_ns(pid: u32) -> io::Result<HashMap<u32, u64>> {
    let mut threads = HashMap::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let entry = entry?;
        let Some(tid) = entry.file_name().to_str().and_then(|t| t.parse().ok()) else { continue };
        // A thread may exit between listing and reading: skip it.
        if let Ok(text) = std::fs::read_to_string(entry.path().join("schedstat"))
            && let Some(ns) = text.split_whitespace().next().and_then(|v| v.parse().ok())
        {
            threads.insert(tid, ns);
        }
    }
    Ok(threads)
}

/// A CPU-time stopwatch for an optional process: the sum over its threads of the CPU time each
/// used since `start` (threads started later count whole). A thread that exits in between is
/// lost, which tokio's worker threads never do; without schedstat it falls back to `stat` ticks.
#[derive(Debug, Clone)]
pub struct CpuMeter {
    pid: Option<u32>,
    threads: Option<HashMap<u32, u64>>,
    ticks: Option<Duration>,
}

impl CpuMeter {
    /// Starts measuring `pid` (nothing without a pid or when /proc cannot be read).
    pub fn start(pid: Option<u32>) -> CpuMeter {
        CpuMeter {
            pid,
            threads: pid.and_then(|p| thread_cpu_ns(p).ok()).filter(|t| t.values().any(|ns| *ns > 0)),
            ticks: pid.and_then(|p| cpu_time(p).ok()),
        }
    }

    /// CPU time used since `start`.
    pub fn elapsed(&self) -> Option<Duration> {
        let pid = self.pid?;
        if let (Some(start), Ok(now)) = (&self.threads, thread_cpu_ns(pid)) {
            let ns: u64 =
                now.iter().map(|(tid, ns)| ns.saturating_sub(start.get(tid).copied().unwrap_or(0))).sum();
            return Some(Duration::from_nanos(ns));
        }
        Some(cpu_time(pid).ok()?.saturating_sub(self.ticks?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_status_and_stat() {
        let status = "Name:\tremoteproxy\nVmPeak:\t  99 kB\nVmRSS:\t   12345 kB\nThreads:\t3\n";
        assert_eq!(parse_rss_kib(status), Some(12345));
        assert_eq!(parse_rss_kib("Name: x\n"), None);
        let stat = "4242 (tokio (rt) x) S 1 4242 4242 0 -1 4194560 1 0 0 0 250 37 0 0 20 0 3 0";
        assert_eq!(parse_cpu_ticks(stat), Some(287));
        assert_eq!(parse_cpu_ticks("garbage"), None);
    }

    #[test]
    fn reads_its_own_process() {
        let me = sample(std::process::id()).unwrap();
        assert!(me.rss_kib > 0 && me.fds > 0);
        assert!(cpu_time(std::process::id()).is_ok());
        let meter = CpuMeter::start(Some(std::process::id()));
        let spin = std::time::Instant::now();
        while spin.elapsed() < Duration::from_millis(30) {
            std::hint::black_box(0u64);
        }
        let used = meter.elapsed().unwrap();
        assert!(used >= Duration::from_millis(10) && used < Duration::from_secs(5), "{used:?}");
        assert!(CpuMeter::start(None).elapsed().is_none());
    }
}
