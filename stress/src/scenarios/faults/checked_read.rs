//! Reading one end of a tunnel while checking every byte against the pattern its partner sent,
//! until enough arrived, the tunnel ended or a time ran out: how the faults see what a tunnel
//! delivered and when it ended.

use std::time::Duration;

use remoteproxy_bench::client::Reader;

use crate::pattern::Verifier;

/// How a checked read ended.
#[derive(Debug)]
pub(super) enum Read {
    /// At least the bytes asked for arrived, all as sent.
    Enough,
    /// The tunnel ended: the read returned 0 or failed (how).
    Ended(String),
    TimedOut,
}

impl Read {
    pub(super) fn describe(&self) -> String {
        match self {
            Read::Enough => "complete".into(),
            Read::Ended(how) => format!("ended: {how}"),
            Read::TimedOut => "timed out".into(),
        }
    }
}

/// Reads and checks bytes until `enough` arrived, the tunnel ends or `limit` passes; a byte that
/// differs from the pattern is an error.
pub(super) async fn read_checked(
    reader: &mut Reader,
    verifier: &mut Verifier,
    enough: u64,
    limit: Duration,
) -> Result<Read, String> {
    let deadline = tokio::time::Instant::now() + limit;
    let mut scratch = vec![0u8; 64 << 10];
    let mut got = Vec::new();
    while verifier.verified < enough {
        got.clear();
        match tokio::time::timeout_at(deadline, reader.read_into(&mut got, &mut scratch)).await {
            Err(_) => return Ok(Read::TimedOut),
            Ok(Ok(0)) => return Ok(Read::Ended("end of stream".into())),
            Ok(Err(e)) => return Ok(Read::Ended(e.to_string())),
            Ok(Ok(_)) => {
                verifier.check(&got).map_err(|at| format!("byte {at} differs from what was sent"))?
            }
        }
    }
    Ok(Read::Enough)
}
