//! The broker's CPU share while a fault goes on, read from `/proc/<pid>/stat` at the start and
//! the end of a stretch: what shows that the stalled-reader step leaves the broker idle.

use std::time::{Duration, Instant};

/// A process's CPU time over a stretch of wall time.
pub(super) struct CpuMeter {
    pid: u32,
    cpu: Duration,
    wall: Instant,
}

impl CpuMeter {
    pub(super) fn start(pid: u32) -> CpuMeter {
        CpuMeter {
            pid,
            cpu: remoteproxy_bench::procfs::cpu_time(pid).unwrap_or_default(),
            wall: Instant::now(),
        }
    }

    /// The CPU time since the start as a share of one core.
    pub(super) fn share(&self) -> f64 {
        let cpu = remoteproxy_bench::procfs::cpu_time(self.pid).unwrap_or_default().saturating_sub(self.cpu);
        cpu.as_secs_f64() / self.wall.elapsed().as_secs_f64()
    }
}
