//! Helpers shared by the client crate's tests (the broker harness itself is the workspace's
//! `remoteproxy-testkit` crate).

#![allow(dead_code)]

use std::path::PathBuf;

use base64::Engine;

use crate::common::{Broker, Kind};

/// Writes the broker's certificate chain as a PEM file in `dir`, as a user would get it.
pub fn ca_file(broker: &Broker, dir: &tempfile::TempDir) -> PathBuf {
    let path = dir.path().join("broker.pem");
    let pem: String = broker
        .certificates
        .iter()
        .map(|cert| {
            let b64 = base64::engine::general_purpose::STANDARD.encode(cert.as_ref());
            let lines: Vec<&str> =
                b64.as_bytes().chunks(64).map(|l| std::str::from_utf8(l).unwrap()).collect();
            format!("-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n", lines.join("\n"))
        })
        .collect();
    std::fs::write(&path, pem).unwrap();
    path
}

/// The URL of one of the broker's listeners.
pub fn url_text(broker: &Broker, kind: Kind) -> String {
    match kind {
        Kind::Tcp => format!("{}://{}", if broker.tls { "ssl" } else { "tcp" }, broker.tcp),
        Kind::WebSocket => format!("{}://{}/", if broker.tls { "wss" } else { "ws" }, broker.websocket),
        Kind::Unix => format!("unix://{}", broker.unix.display()),
    }
}

/// The URL of one of the broker's v2 TunnelProxy listeners.
pub fn url_text_v2(broker: &Broker, kind: Kind) -> String {
    match kind {
        Kind::Tcp => format!("{}://{}", if broker.tls { "ssl" } else { "tcp" }, broker.tcp2),
        Kind::WebSocket => format!("{}://{}/", if broker.tls { "wss" } else { "ws" }, broker.websocket2),
        Kind::Unix => format!("unix://{}", broker.unix2.display()),
    }
}

/// The client binary with `args`; the token (when given) goes through the environment, as the
/// README recommends, and is removed otherwise. stdin, stdout and stderr are piped, and the
/// process is killed when dropped.
pub fn spawn_client(args: &[&str], token: Option<&str>) -> tokio::process::Child {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_remoteproxy-client"));
    command.args(args);
    match token {
        Some(token) => command.env("REMOTEPROXY_TOKEN", token),
        None => command.env_remove("REMOTEPROXY_TOKEN"),
    };
    command
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

/// The exit code of a process that must exit (within the harness's deadline) by itself.
pub async fn exit_code(child: &mut tokio::process::Child) -> i32 {
    crate::common::within("the process to exit", child.wait())
        .await
        .unwrap()
        .code()
        .expect("exited, not killed")
}

/// All a process wrote to stderr (once it is done).
pub async fn stderr_of(child: &mut tokio::process::Child) -> String {
    use tokio::io::AsyncReadExt;
    let mut text = String::new();
    if let Some(mut stderr) = child.stderr.take() {
        stderr.read_to_string(&mut text).await.unwrap();
    }
    text
}
