//! `remoteproxy-stress cluster-worker`: one process of the cluster scenario's clients. The
//! scenario holds more tunnels than one process may have descriptors, so each worker opens its
//! share (the first end on one node, the second on another), checks each with a message both
//! ways, says `ready OK ERRORS FIRST-ERROR` on stdout, and on any line on stdin checks every held
//! tunnel once more and says `checked OK ERRORS FIRST-ERROR` before it exits.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use remoteproxy_bench::client::{Client, Endpoint, Handshake, Reader, Writer};
use tokio::io::AsyncBufReadExt;

/// The two ends of a held tunnel.
type Held = (Reader, Writer, Reader, Writer);

/// Runs the worker: `cluster-worker FIRST-URL SECOND-URL TUNNELS CONCURRENCY`.
pub async fn run(args: &[String]) -> anyhow::Result<()> {
    let [first, second, tunnels, concurrency] = args else {
        anyhow::bail!("usage: cluster-worker FIRST-URL SECOND-URL TUNNELS CONCURRENCY");
    };
    let (first, second) = (Endpoint::parse(first)?, Endpoint::parse(second)?);
    let (tunnels, concurrency): (usize, usize) = (tunnels.parse()?, concurrency.parse()?);
    let client = Arc::new(Client::new(true, Duration::from_secs(60)));
    let opened: Vec<Result<Held, String>> = futures_util::stream::iter(0..tunnels)
        .map(|i| {
            let (client, first, second) = (client.clone(), first.clone(), second.clone());
            async move {
                let (a, b) =
                    client.open_tunnel(&first, &second, Handshake::V1).await.map_err(|e| e.to_string())?;
                let (a_read, a_write) = a.split();
                let (b_read, b_write) = b.split();
                let mut held = (a_read, a_write, b_read, b_write);
                exchange(&mut held, i, 0).await?;
                Ok(held)
            }
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    let (mut held, errors): (Vec<_>, Vec<_>) = opened.into_iter().partition(Result::is_ok);
    let errors: Vec<String> = errors.into_iter().filter_map(Result::err).collect();
    let mut held: Vec<Held> = held.drain(..).filter_map(Result::ok).collect();
    say("ready", held.len(), &errors);
    let mut line = String::new();
    tokio::io::BufReader::new(tokio::io::stdin()).read_line(&mut line).await?;
    let checked: Vec<Result<(), String>> = futures_util::stream::iter(held.iter_mut().enumerate())
        .map(|(i, held)| exchange(held, i, 1))
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    let errors: Vec<String> = checked.iter().filter_map(|r| r.clone().err()).collect();
    say("checked", checked.len() - errors.len(), &errors);
    Ok(())
}

fn say(what: &str, ok: usize, errors: &[String]) {
    let first = errors.first().map(|e| e.replace('\n', " ")).unwrap_or_default();
    println!("{what} {ok} {} {first}", errors.len());
}

/// A message each way, each checked on arrival.
async fn exchange(held: &mut Held, tunnel: usize, round: u8) -> Result<(), String> {
    let (a_read, a_write, b_read, b_write) = held;
    let there = Bytes::from(format!("{tunnel:012} {round} there\n"));
    let back = Bytes::from(format!("{tunnel:012} {round} back!\n"));
    send(a_write, &there).await?;
    expect(b_read, &there).await?;
    send(b_write, &back).await?;
    expect(a_read, &back).await
}

async fn send(writer: &mut Writer, message: &Bytes) -> Result<(), String> {
    writer.write(message).await.map_err(|e| e.to_string())?;
    writer.flush().await.map_err(|e| e.to_string())
}

async fn expect(reader: &mut Reader, message: &Bytes) -> Result<(), String> {
    let mut got = Vec::new();
    let mut scratch = vec![0u8; 256];
    while got.len() < message.len() {
        let read = tokio::time::timeout(Duration::from_secs(60), reader.read_into(&mut got, &mut scratch))
            .await
            .map_err(|_| "no answer within 60 s".to_string())?
            .map_err(|e| e.to_string())?;
        if read == 0 {
            return Err(format!("the tunnel ended after {} of {} bytes", got.len(), message.len()));
        }
    }
    if got != message[..] {
        return Err(format!(
            "{:?} arrived instead of {:?}",
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(message)
        ));
    }
    Ok(())
}
