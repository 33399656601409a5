//! TLS handshakes on their own threads, below the tunnels in CPU priority.
//!
//! A full handshake costs the broker a key exchange and a signature: a fraction of a millisecond
//! of CPU, where forwarding a tunnel's message costs microseconds. When a broker restarts, or a
//! network comes back, every device reconnects at once, and thousands of handshakes become ready
//! together. Run on the runtime that also forwards tunnel bytes, they queue in front of the
//! established tunnels, whose round trips then wait tens of milliseconds for a worker.
//!
//! So handshakes run on a runtime of their own whose threads have a lower scheduling priority
//! (`nice` +10 on Linux). The kernel then gives the CPU to the tunnel runtime's threads whenever
//! they have work, and the handshakes take everything left: alone, they run as fast as before;
//! during a storm the tunnels keep their latency and the storm takes a little longer.
//! Bounding the number of concurrent handshakes instead would let silent connections that never
//! send a ClientHello hold the slots, which is a denial of service.
//!
//! Only the handshake moves, and its socket with it: the socket is registered with the handshake
//! runtime's own reactor for the handshake and back with the main one after it (four `epoll_ctl`
//! calls). Left with the main reactor, every step of every handshake would wake a tunnel thread
//! only to pass the event on to a handshake thread: measured, context switches then took a fifth
//! of the broker's CPU during a storm. The timeout runs in the connection's own task, so the
//! runtime has no timer.

use std::future::Future;
use std::io;
use std::sync::Arc;

use rustls::ServerConfig;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpStream, UnixStream};
use tokio::runtime::{Builder, Runtime};
use tokio_util::task::AbortOnDropHandle;

use super::tls_stream::{self, TlsStream};

/// How much lower than the broker's other threads the handshake threads run (`nice` steps).
const NICENESS: i32 = 10;

/// The handshake runtime. Dropping it stops its threads without waiting for them.
pub struct Handshakes {
    /// `None` when the threads could not be started: handshakes then run where they are called.
    runtime: Option<Runtime>,
}

impl Handshakes {
    /// A runtime with one handshake thread per core. Should the threads fail to start (a process
    /// at its thread limit), handshakes run on the caller's runtime as before, and a line says so.
    pub fn new() -> Handshakes {
        let built = Builder::new_multi_thread()
            .thread_name("remoteproxy-tls")
            .worker_threads(std::thread::available_parallelism().map_or(2, |n| n.get()))
            .enable_io()
            .on_thread_start(lower_priority)
            .build();
        let runtime = built
            .inspect_err(|error| {
                tracing::warn!(%error, "cannot start the TLS handshake threads; handshakes share the tunnels' threads")
            })
            .ok();
        Handshakes { runtime }
    }

    /// The TLS handshake of `stream` as its server, on the handshake threads. Dropping the
    /// returned future (a timeout, the broker stopping) aborts it and closes the socket.
    pub fn accept<S>(
        &self,
        stream: S,
        config: Arc<ServerConfig>,
    ) -> impl Future<Output = io::Result<TlsStream<S>>> + Send + 'static
    where
        S: Rehome + AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let detached = stream.detach();
        let handshake = self.run(async move {
            let stream = S::attach(detached?)?;
            let tls = tls_stream::accept(stream, config).await?;
            tls.try_map_io(S::detach)
        });
        async move {
            let tls = handshake.await.unwrap_or_else(|| Err(io::ErrorKind::Interrupted.into()))?;
            tls.try_map_io(S::attach)
        }
    }

    /// Runs `handshake` on the handshake threads and hands back its result; `None` when it was
    /// cut short because the broker is stopping. Dropping the returned future (a timeout, the
    /// broker stopping) aborts the handshake.
    pub fn run<F>(&self, handshake: F) -> impl Future<Output = Option<F::Output>> + Send + 'static
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let place = match &self.runtime {
            Some(runtime) => Place::There(AbortOnDropHandle::new(runtime.spawn(handshake))),
            None => Place::Here(handshake),
        };
        async move {
            match place {
                Place::Here(handshake) => Some(handshake.await),
                Place::There(handle) => handle.await.ok(),
            }
        }
    }
}

/// A socket that can leave one runtime's reactor for another's: deregistered into its std form,
/// registered again with the reactor of the runtime that attaches it.
pub trait Rehome: Sized {
    type Detached: Send + 'static;
    fn detach(self) -> io::Result<Self::Detached>;
    fn attach(detached: Self::Detached) -> io::Result<Self>;
}

impl Rehome for TcpStream {
    type Detached = std::net::TcpStream;
    fn detach(self) -> io::Result<Self::Detached> {
        self.into_std()
    }
    fn attach(detached: Self::Detached) -> io::Result<Self> {
        TcpStream::from_std(detached)
    }
}

impl Rehome for UnixStream {
    type Detached = std::os::unix::net::UnixStream;
    fn detach(self) -> io::Result<Self::Detached> {
        self.into_std()
    }
    fn attach(detached: Self::Detached) -> io::Result<Self> {
        UnixStream::from_std(detached)
    }
}

/// Where one handshake runs.
enum Place<F: Future> {
    Here(F),
    There(AbortOnDropHandle<F::Output>),
}

impl Drop for Handshakes {
    fn drop(&mut self) {
        // Dropping a runtime inside another one would block; its tasks are only handshakes.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Lowers the calling thread's scheduling priority. On Linux `setpriority` with a thread id
/// applies to that one thread; elsewhere it would apply to the whole process, so it is skipped.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    {
        let thread = Some(rustix::thread::gettid());
        let lowered = rustix::process::getpriority_process(thread)
            .and_then(|current| rustix::process::setpriority_process(thread, (current + NICENESS).min(19)));
        if let Err(error) = lowered {
            tracing::debug!(%error, "cannot lower the TLS handshake threads' priority");
        }
    }
}

/// The calling thread's `nice` value (0 where threads have none of their own).
#[cfg(test)]
fn own_priority() -> i32 {
    #[cfg(target_os = "linux")]
    return rustix::process::getpriority_process(Some(rustix::thread::gettid())).unwrap();
    #[cfg(not(target_os = "linux"))]
    return 0;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_handshake_runs_on_its_own_lower_priority_thread() {
        let handshakes = Handshakes::new();
        let main_thread = std::thread::current().id();
        let ran_on = handshakes
            .run(async {
                let name = std::thread::current().name().map(str::to_owned);
                (std::thread::current().id(), name, own_priority())
            })
            .await
            .unwrap();
        assert_ne!(ran_on.0, main_thread);
        assert_eq!(ran_on.1.as_deref(), Some("remoteproxy-tls"));
        if cfg!(target_os = "linux") {
            assert_eq!(ran_on.2, (own_priority() + NICENESS).min(19));
        }
    }

    #[tokio::test]
    async fn dropping_the_waiter_aborts_the_handshake() {
        let handshakes = Handshakes::new();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let waiter = handshakes.run(async move {
            let _keep = tx;
            std::future::pending::<()>().await
        });
        drop(waiter);
        // The sender is dropped with the aborted task, which closes the channel.
        assert!(tokio::time::timeout(std::time::Duration::from_secs(10), rx).await.unwrap().is_err());
    }
}
