//! Fault 1, the killed peer: a `remoteproxy-client --stdio` process at one end of a tunnel is
//! killed with SIGKILL while checked data flows. This shows that the broker ends the tunnel for
//! the partner within 2 s, that tunnels moving data beside it lose nothing, and that nothing of
//! the dead client stays in the broker.

use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;
use std::time::{Duration, Instant};

use remoteproxy_bench::client::{Credentials, Handshake};
use tokio::io::AsyncWriteExt;

use super::checked_read::{Read, read_checked};
use super::{CHUNK, open_many, seed, start_fault};
use crate::Ctx;
use crate::broker::{Broker, Setup};
use crate::pattern::{Pattern, Verifier};
use crate::scenarios::common::{check_none, check_settled, join_transfers, spawn_transfers};
use crate::tunnels::{Pace, ms};

/// How much the killed peer must have delivered before it is killed.
const FLOWING: u64 = 256 << 10;

/// 1: a `remoteproxy-client --stdio` process is one end of a tunnel carrying checked data; it is
/// killed with SIGKILL once bytes flow. Its partner must see the end within 2 s, the bystander
/// tunnels must finish with every byte, and nothing of the dead client may stay in the broker.
pub(super) async fn killed_peer(ctx: &Ctx) {
    let (r, n) = (&ctx.report, ctx.size.bystanders);
    let what =
        format!("a client process killed with SIGKILL mid-transfer, {n} tunnels moving data beside it");
    let setup = Setup { mock: true, ..Setup::default() };
    let Some(broker) = start_fault(ctx, "faults/killed-peer", what, setup).await else { return };
    let fds = broker.fds();
    let seed = seed(1);
    let (pairs, open_errors) = open_many(ctx, &broker, 0, n).await;
    let started = Instant::now();
    let pace =
        Pace { chunk: 2048, interval: Duration::from_millis(50), until: started + Duration::from_secs(3) };
    let bystanders = spawn_transfers(pairs, seed, pace);

    match feed_and_kill(ctx, &broker, seed).await {
        Ok((delivered, end, ended_by)) => {
            let at = started.elapsed().saturating_sub(end);
            r.figure("bytes the client delivered before the kill", format!("{delivered} (all checked)"));
            r.figure("the kill fell into the bystanders' 3 s", format!("{:.2} s in", at.as_secs_f64()));
            r.figure("kill → its partner saw the end", format!("{} ({ended_by})", ms(end)));
            r.check(
                "the partner of the killed client saw the tunnel end within 2 s",
                end <= Duration::from_secs(2),
                ms(end),
            );
        }
        Err(e) => r.error("the partner of the killed client saw the tunnel end within 2 s", e),
    }

    let (bytes, errors) = join_transfers(bystanders).await;
    r.figure("bystander bytes verified (both ways)", format!("{:.2} MiB", bytes as f64 / 1048576.0));
    check_none(r, "every bystander tunnel opened", &open_errors, "failed");
    check_none(r, "every bystander byte arrived in order, 0 errors", &errors, "tunnels failed");
    check_settled(r, &broker, fds, "nothing of the killed client left in the broker", |t| {
        format!("settled in {:.1} s", t.as_secs_f64())
    })
    .await;
}

/// Spawns the client process on the TLS-TCP listener, joins it in-process over WebSocket, pipes
/// pattern data into its stdin until [`FLOWING`] bytes arrived checked, then kills it. The bytes
/// delivered, how long the partner took to see the end after the kill, and how it saw it.
async fn feed_and_kill(ctx: &Ctx, broker: &Broker, seed: u64) -> Result<(u64, Duration, String), String> {
    let credentials = Credentials {
        token: format!("bench-faults-{}-kill", std::process::id()),
        nonce: "kill".into(),
        uuid: ctx.client.fresh_uuid(0xfa01),
        name: "stress-partner".into(),
    };
    let mut child = tokio::process::Command::new(&ctx.client_binary)
        .args([
            "-u",
            &format!("ssl://{}", broker.tcp),
            "-i",
            "-t",
            &credentials.token,
            "-n",
            &credentials.nonce,
            "--stdio",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", ctx.client_binary.display()))?;
    let mut stdin = child.stdin.take().ok_or("no stdin")?;
    let feeding = tokio::spawn(async move {
        let mut pattern = Pattern::new(seed, u64::MAX, 0);
        let mut written = 0u64;
        // Ends with EPIPE once the process is gone.
        while stdin.write_all(&pattern.next(CHUNK)).await.is_ok() {
            written += CHUNK as u64;
        }
        written
    });
    let partner = tokio::time::timeout(
        Duration::from_secs(10),
        ctx.client.open_end(&broker.v1_ws(), Handshake::V1, &credentials),
    )
    .await
    .map_err(|_| "the tunnel with the client process did not open within 10 s".to_string())?;
    let (mut reader, _writer) = partner.map_err(|e| format!("the in-process partner: {e}"))?.split();
    let mut verifier = Verifier::new(Pattern::new(seed, u64::MAX, 0));
    match read_checked(&mut reader, &mut verifier, FLOWING, Duration::from_secs(10)).await? {
        Read::Enough => {}
        Read::Ended(how) => return Err(format!("the tunnel ended before the kill: {how}")),
        Read::TimedOut => return Err(format!("only {} bytes arrived within 10 s", verifier.verified)),
    }
    let delivered = verifier.verified;
    child.start_kill().map_err(|e| format!("kill: {e}"))?;
    let killed = Instant::now();
    let outcome = read_checked(&mut reader, &mut verifier, u64::MAX, Duration::from_secs(10)).await?;
    let end = killed.elapsed();
    let status = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
    let _ = tokio::time::timeout(Duration::from_secs(5), feeding).await;
    match status {
        Ok(Ok(s)) if s.signal() == Some(9) => {}
        other => return Err(format!("the client process did not die of SIGKILL: {other:?}")),
    }
    match outcome {
        Read::Ended(how) => Ok((
            delivered,
            end,
            format!("{how}, {} more checked bytes after the kill", verifier.verified - delivered),
        )),
        _ => Err(format!("the partner still had its tunnel {} after the kill", ms(end))),
    }
}
