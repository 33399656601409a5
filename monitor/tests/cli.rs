//! The `remoteproxy-monitor` binary against a real broker (started in-process by the test
//! harness): `-j`, `-n`, the errors, and the live view in a pseudo-terminal, read through a
//! terminal emulator.

use remoteproxy_testkit as common;

use std::path::Path;
use std::process::{Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Broker, Client, Kind, WAIT, random_bytes, tunnel, within};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};

const BIN: &str = env!("CARGO_BIN_EXE_remoteproxy-monitor");

async fn run(args: &[&str]) -> Output {
    let child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    within("remoteproxy-monitor to exit", child.wait_with_output()).await.unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).unwrap()
}

/// A registered TunnelProxy server.
async fn register_server(broker: &Broker, name: &str) -> Client {
    let mut server = broker.connect_v2(Kind::Tcp).await;
    let uuid = uuid::Uuid::new_v4().to_string();
    let response =
        server.call(1, "TunnelProxy.RegisterServer", json!({"serverName": name, "serverUuid": uuid})).await;
    assert_eq!(response["params"]["tunnelProxyError"], "TunnelProxyErrorNoError", "{response}");
    server
}

/// A v1 tunnel and an idle v2 server.
async fn busy_broker() -> (Broker, (Client, Client), Client) {
    let broker = Broker::start().await;
    let tunnel = tunnel(&broker, Kind::Tcp, Kind::WebSocket, "token").await;
    let server = register_server(&broker, "idle-device").await;
    (broker, tunnel, server)
}

fn socket(broker: &Broker) -> &str {
    broker.monitor.to_str().unwrap()
}

#[tokio::test]
async fn json_prints_the_raw_snapshot_and_exits_0() {
    let (broker, _tunnel, _server) = busy_broker().await;
    let output = run(&["-s", socket(&broker), "-j"]).await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert_eq!(text(&output.stderr), "");
    let stdout = text(&output.stdout);
    assert_eq!(stdout.lines().count(), 1, "one line: {stdout}");
    let snapshot: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(snapshot["serverName"], "remoteproxy");
    assert_eq!(snapshot["proxyStatistic"]["clientCount"], 2, "{snapshot}");
    assert_eq!(snapshot["proxyStatistic"]["tunnelCount"], 1);
    let names: Vec<&str> = snapshot["proxyStatistic"]["clients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"first") && names.contains(&"second"), "{names:?}");
    assert_eq!(snapshot["tunnelProxyStatistic"]["tunnelConnections"], json!([]), "idle servers need -a");

    let output = run(&["--socket", socket(&broker), "--json", "--all"]).await;
    assert_eq!(output.status.code(), Some(0));
    let snapshot: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(snapshot["tunnelProxyStatistic"]["tunnelConnections"][0]["name"], "idle-device", "{snapshot}");
}

#[tokio::test]
async fn non_interactive_prints_one_summary_and_exits_0() {
    let (broker, _tunnel, _server) = busy_broker().await;
    let output = run(&["-s", socket(&broker), "-n"]).await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    println!("{stdout}");
    let version = env!("CARGO_PKG_VERSION");
    assert!(
        stdout.starts_with(&format!("Broker remoteproxy · version {version} · API 0.5 · up ")),
        "{stdout}"
    );
    assert!(stdout.contains("\nProxy        2 clients · 1 tunnel · "), "{stdout}");
    assert!(stdout.contains("\nTunnelProxy  1 server · 0 clients · "), "{stdout}");
    assert!(stdout.contains("· TCP 1 · WebSocket 0 · unix 0\n"), "{stdout}");
    assert!(stdout.contains("\nClients (2)\n  NAME "), "{stdout}");
    let first = stdout.lines().find(|l| l.starts_with("  first ")).expect("a row for the client 'first'");
    for cell in ["127.0.0.1", "user-of-first", "tunnel", "uuid-a"] {
        assert!(first.contains(cell), "{cell} in {first}");
    }
    assert!(stdout.contains("\nTunnels (1)\n"), "{stdout}");
    assert!(stdout.contains("  first (127.0.0.1)  second (127.0.0.1)  user-of-first"), "{stdout}");
    assert!(stdout.contains("\nTunnelProxy servers (0)\n  none\n"), "{stdout}");

    let output = run(&["-s", socket(&broker), "-n", "-a"]).await;
    let stdout = text(&output.stdout);
    assert!(stdout.contains("\nTunnelProxy servers (1)\n"), "{stdout}");
    assert!(stdout.contains("\n  idle-device "), "{stdout}");
}

#[tokio::test]
async fn a_missing_socket_or_a_stopped_broker_is_one_line_and_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("monitor.sock");
    for args in [&["-n"][..], &["-j"], &[]] {
        let output = run(&[&["-s", missing.to_str().unwrap()][..], args].concat()).await;
        assert_eq!(output.status.code(), Some(1), "{args:?}");
        assert_eq!(text(&output.stdout), "");
        let stderr = text(&output.stderr);
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(
            stderr.contains(&missing.display().to_string()) && stderr.contains("no such socket"),
            "{stderr}"
        );
    }

    // The socket file of a broker that is gone.
    let mut broker = Broker::start().await;
    let path = broker.monitor.clone();
    broker.signal_stop();
    assert!(broker.stopped_within(WAIT).await);
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    let output = run(&["-s", path.to_str().unwrap(), "-n"]).await;
    assert_eq!(output.status.code(), Some(1));
    let stderr = text(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("the broker is not running"), "{stderr}");
}

#[tokio::test]
async fn the_live_view_needs_a_terminal() {
    let broker = Broker::start().await;
    let output = run(&["-s", socket(&broker)]).await;
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(text(&output.stdout), "");
    assert_eq!(
        text(&output.stderr),
        "remoteproxy-monitor: standard output is not a terminal: use -n for a summary or -j for the JSON snapshot\n"
    );
}

// ---------------------------------------------------------------------------------------------
// The live view in a pseudo-terminal.

const ROWS: u16 = 24;
const COLUMNS: u16 = 100;

/// `remoteproxy-monitor` on a pseudo-terminal; everything it writes goes through a terminal
/// emulator (and is kept raw, to check the last bytes).
struct Tui {
    child: Child,
    input: pty_process::OwnedWritePty,
    screen: Arc<Mutex<vt100::Parser>>,
    raw: Arc<Mutex<Vec<u8>>>,
    reader: tokio::task::JoinHandle<()>,
}

impl Tui {
    fn start(socket: &Path) -> Tui {
        let (pty, pts) = pty_process::open().unwrap();
        pty.resize(pty_process::Size::new(ROWS, COLUMNS)).unwrap();
        let child = pty_process::Command::new(BIN)
            .args(["-s", socket.to_str().unwrap()])
            .env("TERM", "xterm-256color")
            .kill_on_drop(true)
            .spawn(pts)
            .unwrap();
        let (mut output, input) = pty.into_split();
        let screen = Arc::new(Mutex::new(vt100::Parser::new(
            ROWS.try_into().unwrap(),
            COLUMNS.try_into().unwrap(),
            0,
        )));
        let raw = Arc::new(Mutex::new(Vec::new()));
        let (screen_, raw_) = (screen.clone(), raw.clone());
        let reader = tokio::spawn(async move {
            let mut chunk = [0u8; 8192];
            // EIO once the program has exited and the terminal is closed.
            while let Ok(n @ 1..) = output.read(&mut chunk).await {
                screen_.lock().unwrap().process(&chunk[..n]);
                raw_.lock().unwrap().extend_from_slice(&chunk[..n]);
            }
        });
        Tui { child, input, screen, raw, reader }
    }

    fn contents(&self) -> String {
        self.screen.lock().unwrap().screen().contents()
    }

    /// Waits (bounded) until the screen shows every one of `texts`, and returns it.
    async fn shows(&self, texts: &[&str]) -> String {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let contents = self.contents();
            if texts.iter().all(|t| contents.contains(t)) {
                return contents;
            }
            assert!(tokio::time::Instant::now() < deadline, "the screen never showed {texts:?}:\n{contents}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn press(&mut self, keys: &str) {
        self.input.write_all(keys.as_bytes()).await.unwrap();
    }

    /// Waits for the exit; checks the terminal was put back (the alternate screen left last).
    async fn exits_restored(mut self) -> i32 {
        let status = within("the monitor to exit", self.child.wait()).await.unwrap();
        within("the terminal output to end", &mut self.reader).await.unwrap();
        let raw = self.raw.lock().unwrap();
        assert!(raw.ends_with(b"\x1b[?1049l"), "the last output leaves the alternate screen: {:?}", {
            let tail = &raw[raw.len().saturating_sub(60)..];
            String::from_utf8_lossy(tail).to_string()
        });
        let screen = self.screen.lock().unwrap();
        assert!(!screen.screen().alternate_screen());
        assert!(!screen.screen().hide_cursor(), "the cursor is shown again");
        status.code().expect("exited, not killed by a signal")
    }
}

#[tokio::test]
async fn the_live_view_shows_the_clients_tab_refreshes_and_quits_on_q() {
    let broker = Broker::start().await;
    let (mut first, mut second) = tunnel(&broker, Kind::Tcp, Kind::WebSocket, "token").await;
    let data = random_bytes(3000);
    first.send_bytes(&data).await;
    assert_eq!(second.recv_data(3000).await, data);
    let data = random_bytes(1500);
    second.send_bytes(&data).await;
    assert_eq!(first.recv_data(1500).await, data);
    let mut tui = Tui::start(&broker.monitor);
    tui.shows(&["remoteproxy-monitor", "Broker remoteproxy · version", "Proxy        2 clients · 1 tunnel"])
        .await;
    tui.shows(&["Clients (2)", "first", "second", "user-of-first", "127.0.0.1"]).await;
    // What each sent, in human units: 3000 B and 1500 B.
    let screen =
        tui.shows(&["2.9 KiB", "1.5 KiB", "Totals       2 clients · 1 tunnel · 4.4 KiB relayed"]).await;
    println!("{screen}");

    // Refreshed every second: a second tunnel shows up.
    let _second_tunnel = tunnel(&broker, Kind::Unix, Kind::Tcp, "other").await;
    tui.shows(&["Proxy        4 clients · 2 tunnels", "Clients (4)"]).await;

    // The other tabs.
    let _server = register_server(&broker, "idle-device").await;
    tui.press("2").await;
    tui.shows(&["Client one", "first (127.0.0.1)"]).await;
    tui.press("3a").await;
    tui.shows(&["TunnelProxy servers (1)", "idle-device", "(all servers)"]).await;

    tui.press("q").await;
    assert_eq!(tui.exits_restored().await, 0);
}

#[tokio::test]
async fn the_live_view_restores_the_terminal_on_sigterm() {
    let broker = Broker::start().await;
    let tui = Tui::start(&broker.monitor);
    tui.shows(&["Clients (0)"]).await;
    let pid = tui.child.id().unwrap();
    let status = std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status().unwrap();
    assert!(status.success());
    assert_eq!(tui.exits_restored().await, 128 + 15);
}

#[tokio::test]
async fn the_live_view_survives_the_broker_going_away() {
    let mut broker = Broker::start().await;
    let mut tui = Tui::start(&broker.monitor);
    tui.shows(&["Clients (0)"]).await;
    broker.signal_stop();
    assert!(broker.stopped_within(WAIT).await);
    tui.shows(&["; retrying"]).await;
    tui.press("q").await;
    assert_eq!(tui.exits_restored().await, 0);
}

/// `-v` and `--version`, as on the broker and the client.
#[tokio::test]
async fn version_flags_print_the_version() {
    for flag in ["-v", "--version"] {
        let out = Command::new(BIN).arg(flag).output().await.unwrap();
        assert_eq!(out.status.code(), Some(0), "{flag}");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(stdout.trim(), format!("remoteproxy-monitor {}", env!("CARGO_PKG_VERSION")), "{flag}");
    }
}
