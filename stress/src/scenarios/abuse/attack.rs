//! The attackers' runtime: two worker threads of their own at a lower priority, and the TLS
//! client configuration they share. It keeps thousands of attacking handshakes from delaying the
//! canary's round trips in this process.

use std::future::Future;

use tokio::runtime::Runtime;
use tokio::task::JoinHandle;

use super::support::joined;
use super::tls::Kit;

/// The attackers: a runtime of their own (so the canary's round trips never wait behind their
/// handshakes for one of this process's workers) and a TLS client configuration.
pub(super) struct Attack {
    runtime: Option<Runtime>,
    pub(super) kit: Kit,
}

impl Attack {
    /// Two worker threads at a lower priority, and the TLS configuration.
    pub(super) fn new() -> Result<Attack, String> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("abuse")
            .on_thread_start(lower_priority)
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Attack { runtime: Some(runtime), kit: Kit::new()? })
    }

    /// Runs `future` on the attackers' runtime.
    pub(super) fn spawn<F: Future + Send + 'static>(&self, future: F) -> JoinHandle<F::Output>
    where
        F::Output: Send + 'static,
    {
        match &self.runtime {
            Some(runtime) => runtime.spawn(future),
            None => tokio::spawn(future),
        }
    }

    /// Runs `future` on the attackers' runtime and waits for it.
    pub(super) async fn run<T: Send + 'static>(
        &self,
        future: impl Future<Output = Result<T, String>> + Send + 'static,
    ) -> Result<T, String> {
        joined(self.spawn(future)).await
    }
}

/// Puts the calling thread at `nice` +10, as the broker does with its handshake threads, so the
/// attackers take only the CPU that the canary (and the broker) leave. There is no libc binding
/// here: `renice` on the thread's id does it; should that fail, the thread keeps its priority.
fn lower_priority() {
    let Ok(link) = std::fs::read_link("/proc/thread-self") else { return };
    let Some(tid) = link.file_name().map(|t| t.to_string_lossy().to_string()) else { return };
    let _ = std::process::Command::new("renice")
        .args(["-n", "10", "-p", &tid])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
}

impl Drop for Attack {
    fn drop(&mut self) {
        // Dropping a runtime inside another one would panic; this lets its threads go.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}
