//! The `static` authenticator through the broker: a token hash file, reloaded by its watcher
//! and on SIGHUP without touching established tunnels.

use crate::binary;
use crate::common::*;

use std::path::Path;
use std::time::Duration;

use remoteproxy::authenticators;
use remoteproxy::authenticators::settings::{AuthenticationSettings, KindSettings, StaticSettings};
use sha2::{Digest, Sha256};

// ---------------------------------------------------------------------------------------------
// Secrets: every token contains TOKEN_MARK; none may ever be logged.

const TOKEN_MARK: &str = "stk-4a7c19e2b6";

fn token(name: &str) -> String {
    format!("{name}-{TOKEN_MARK}")
}

const TOKEN_NAMES: [&str; 6] = ["alpha", "beta", "gamma", "delta", "pasted", "unknown"];

fn assert_no_secret_logged() {
    let tokens: Vec<String> = TOKEN_NAMES.iter().map(|n| token(n)).collect();
    let mut secrets: Vec<&str> = tokens.iter().map(String::as_str).collect();
    secrets.push(TOKEN_MARK);
    assert_not_logged(&secrets);
}

fn sha256_hex(token: &str) -> String {
    Sha256::digest(token.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// A token file line for `name`'s token.
fn line(name: &str, user: &str) -> String {
    format!("{} {user}\n", sha256_hex(&token(name)))
}

/// Replaces the file atomically (write a sibling, rename it over), like careful editors and
/// configuration management do.
fn replace(file: &Path, text: &str) {
    let tmp = file.with_extension("new");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, file).unwrap();
}

const RELOAD_INTERVAL: Duration = Duration::from_millis(100);

async fn start_broker(file: &Path) -> Broker {
    let settings = AuthenticationSettings {
        kind: KindSettings::Static(StaticSettings {
            file: file.to_path_buf(),
            reload_interval: RELOAD_INTERVAL,
        }),
        cache_ttl: None,
        throttle: None,
        request_timeout: Duration::from_secs(1),
    };
    let authenticator = authenticators::build(&settings).expect("a valid token file");
    Broker::builder().authenticator(authenticator).start().await
}

/// The outcome of one fresh client authenticating with `token`.
async fn outcome(broker: &Broker, kind: Kind, token: &str) -> String {
    let mut client = broker.connect(kind).await;
    client.authenticate("uuid-x", "x", token, Some(&uuid::Uuid::new_v4().to_string())).await
}

/// Waits (bounded) until `token` gets `expected`.
async fn eventually(broker: &Broker, token: &str, expected: &str) {
    within(&format!("the token to get {expected}"), async {
        while outcome(broker, Kind::Unix, token).await != expected {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
}

/// Data flows both ways through a tunnel.
async fn tunnel_works(a: &mut Client, b: &mut Client, what: &str) {
    let there = format!("{what}: there");
    a.send_bytes(there.as_bytes()).await;
    assert_eq!(b.recv_data(there.len()).await, there.as_bytes());
    let back = format!("{what}: back");
    b.send_bytes(back.as_bytes()).await;
    assert_eq!(a.recv_data(back.len()).await, back.as_bytes());
}

// ---------------------------------------------------------------------------------------------
// In-process broker.

#[tokio::test]
async fn listed_tokens_are_accepted_and_others_refused() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tokens");
    replace(
        &file,
        &format!("# test tokens\n\n{}{}", line("alpha", "alice"), line("beta", "bob the builder")),
    );
    let broker = start_broker(&file).await;

    let (mut a, mut b) = tunnel(&broker, Kind::Tcp, Kind::WebSocket, &token("alpha")).await;
    tunnel_works(&mut a, &mut b, "alpha").await;
    let (mut c, mut d) = tunnel(&broker, Kind::Unix, Kind::Tcp, &token("beta")).await;
    tunnel_works(&mut c, &mut d, "beta").await;

    for refused in [token("unknown"), sha256_hex(&token("alpha")), String::new()] {
        for kind in ALL_KINDS {
            let mut client = broker.connect(kind).await;
            let got = client.authenticate("uuid-r", "r", &refused, None).await;
            assert_eq!(got, "AuthenticationErrorAuthenticationFailed", "{kind:?}");
            expect_close(&mut client, "API call was not successfully.").await;
        }
    }
    broker.stop().await;
    assert_no_secret_logged();
}

#[tokio::test]
async fn edits_are_picked_up_while_a_tunnel_keeps_running() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tokens");
    replace(&file, &line("alpha", "alice"));
    let broker = start_broker(&file).await;
    let (mut a, mut b) = tunnel(&broker, Kind::Tcp, Kind::WebSocket, &token("alpha")).await;
    tunnel_works(&mut a, &mut b, "before").await;
    assert_eq!(outcome(&broker, Kind::Tcp, &token("beta")).await, "AuthenticationErrorAuthenticationFailed");

    // alpha out, beta in: the running alpha tunnel is not touched.
    replace(&file, &format!("# rotated\n{}", line("beta", "bob")));
    eventually(&broker, &token("beta"), "AuthenticationErrorNoError").await;
    assert_eq!(outcome(&broker, Kind::Tcp, &token("alpha")).await, "AuthenticationErrorAuthenticationFailed");
    tunnel_works(&mut a, &mut b, "after the reload").await;
    let (mut c, mut d) = tunnel(&broker, Kind::Tcp, Kind::Unix, &token("beta")).await;
    tunnel_works(&mut c, &mut d, "beta").await;

    // An edit rewritten in place (truncate, write) is picked up too.
    std::fs::write(&file, format!("{}{}", line("beta", "bob"), line("gamma", "gus"))).unwrap();
    eventually(&broker, &token("gamma"), "AuthenticationErrorNoError").await;

    // A broken edit (a raw token pasted instead of its hash) keeps the previous table.
    replace(&file, &format!("{}{} pat\n", line("delta", "dave"), token("pasted")));
    tokio::time::sleep(RELOAD_INTERVAL * 5).await;
    assert_eq!(outcome(&broker, Kind::Tcp, &token("beta")).await, "AuthenticationErrorNoError");
    assert_eq!(outcome(&broker, Kind::Tcp, &token("gamma")).await, "AuthenticationErrorNoError");
    assert_eq!(outcome(&broker, Kind::Tcp, &token("delta")).await, "AuthenticationErrorAuthenticationFailed");
    tunnel_works(&mut a, &mut b, "after the broken edit").await;
    tunnel_works(&mut c, &mut d, "after the broken edit").await;
    {
        let logs = capture_logs();
        let text = String::from_utf8_lossy(&logs.lock().unwrap()).to_string();
        let expected = format!("\"{}\" line 2: ", file.display());
        assert!(
            text.lines()
                .any(|l| l.contains("WARN") && l.contains(&expected) && l.contains("keeping the previous")),
            "a warning names the broken line"
        );
    }

    // Fixed: loaded.
    replace(&file, &format!("{}{}", line("delta", "dave"), line("beta", "bob")));
    eventually(&broker, &token("delta"), "AuthenticationErrorNoError").await;
    assert_eq!(outcome(&broker, Kind::Tcp, &token("gamma")).await, "AuthenticationErrorAuthenticationFailed");
    tunnel_works(&mut a, &mut b, "at the end").await;
    drop((a, b, c, d));
    broker.stop().await;
    assert_no_secret_logged();
}

// ---------------------------------------------------------------------------------------------
// The real binary.

/// The config sections for a static authenticator on `tokens` in `dir`.
fn static_sections(dir: &Path, interval_ms: u64, tokens: &str) -> String {
    let file = dir.join("tokens");
    std::fs::write(&file, tokens).unwrap();
    format!(
        "[Authentication]\ntype=static\nthrottle=false\n\
         [StaticAuthenticator]\nfile={}\nreloadInterval={interval_ms}\n",
        file.display()
    )
}

/// Two stream clients of a broker process joined into a tunnel with `token`.
async fn proc_tunnel(proc: &binary::Proc, token: &str) -> (Client, Client) {
    let nonce = uuid::Uuid::new_v4().to_string();
    let mut first = proc.client(Kind::Tcp).await;
    let mut second = proc.client(Kind::Unix).await;
    assert_eq!(first.authenticate("uuid-a", "a", token, Some(&nonce)).await, "AuthenticationErrorNoError");
    assert_eq!(second.authenticate("uuid-b", "b", token, Some(&nonce)).await, "AuthenticationErrorNoError");
    second.wait_tunnel().await;
    first.wait_tunnel().await;
    (first, second)
}

async fn proc_outcome(proc: &binary::Proc, token: &str) -> String {
    let mut client = proc.client(Kind::Tcp).await;
    client.authenticate("uuid-x", "x", token, None).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_file_without_dropping_tunnels() {
    // An hour between checks: only SIGHUP reloads here.
    let mut proc = binary::Proc::spawn(|dir| static_sections(dir, 3_600_000, &line("alpha", "alice")));
    proc.ready().await;
    let file = proc.dir.path().join("tokens");
    let (mut a, mut b) = proc_tunnel(&proc, &token("alpha")).await;
    tunnel_works(&mut a, &mut b, "before").await;

    replace(&file, &line("beta", "bob"));
    assert_eq!(proc_outcome(&proc, &token("beta")).await, "AuthenticationErrorAuthenticationFailed");
    proc.signal("HUP");
    proc.logged("SIGHUP: authenticator reloaded").await;
    assert_eq!(proc_outcome(&proc, &token("beta")).await, "AuthenticationErrorNoError");
    assert_eq!(proc_outcome(&proc, &token("alpha")).await, "AuthenticationErrorAuthenticationFailed");
    tunnel_works(&mut a, &mut b, "after SIGHUP").await;

    // A broken file: the reload fails, names the line, and the previous tokens stay.
    replace(&file, &format!("# new\n{}{}\n", line("gamma", "gus"), token("pasted")));
    proc.signal("HUP");
    proc.logged("SIGHUP: authenticator reload failed").await;
    let log = proc.stderr_text();
    let failure = log.lines().find(|l| l.contains("reload failed")).unwrap();
    assert!(failure.contains(&format!("\"{}\" line 3: ", file.display())), "{failure}");
    assert_eq!(proc_outcome(&proc, &token("beta")).await, "AuthenticationErrorNoError");
    assert_eq!(proc_outcome(&proc, &token("gamma")).await, "AuthenticationErrorAuthenticationFailed");
    tunnel_works(&mut a, &mut b, "after the failed SIGHUP").await;

    assert!(
        proc.stderr_text().contains("alice") || proc.stderr_text().contains("bob"),
        "user names are logged"
    );
    drop((a, b));
    let log = proc.stop().await;
    binary::assert_not_in_log(&log, &[TOKEN_MARK]);
    assert!(!log.contains(&sha256_hex(&token("beta"))), "token hashes are not logged either");
}

/// `new` runs before the runtime: the watcher starts with the first authentication, catches up
/// with what changed before, and then follows the file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binarys_watcher_follows_the_file() {
    let mut proc = binary::Proc::spawn(|dir| static_sections(dir, 100, &line("alpha", "alice")));
    proc.ready().await;
    let file = proc.dir.path().join("tokens");
    // Changed before any client authenticated.
    replace(&file, &line("beta", "bob"));
    assert_eq!(proc_outcome(&proc, &token("beta")).await, "AuthenticationErrorNoError");
    let (mut a, mut b) = proc_tunnel(&proc, &token("beta")).await;

    replace(&file, &line("gamma", "gus"));
    within("the watcher to load gamma", async {
        while proc_outcome(&proc, &token("gamma")).await != "AuthenticationErrorNoError" {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert_eq!(proc_outcome(&proc, &token("beta")).await, "AuthenticationErrorAuthenticationFailed");
    tunnel_works(&mut a, &mut b, "after the watcher's reload").await;
    drop((a, b));
    let log = proc.stop().await;
    assert!(log.contains("token file reloaded after a change"), "{log}");
    binary::assert_not_in_log(&log, &[TOKEN_MARK]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_line_at_start_exits_2_naming_the_file_and_line() {
    let text = format!("# tokens\n{}\n{} mallory\n", line("alpha", "alice").trim_end(), token("pasted"));
    let mut proc = binary::Proc::spawn(|dir| static_sections(dir, 1000, &text));
    let status = proc.exit_status(WAIT).await;
    let stderr = proc.stderr_text();
    assert_eq!(status.code(), Some(2), "{stderr}");
    let file = proc.dir.path().join("tokens");
    assert!(stderr.contains("[StaticAuthenticator] file: "), "{stderr}");
    assert!(stderr.contains(&format!("\"{}\" line 3: ", file.display())), "{stderr}");
    assert!(stderr.contains("64 hexadecimal"), "{stderr}");
    binary::assert_not_in_log(&stderr, &[TOKEN_MARK, "mallory"]);

    // A missing file too.
    let mut proc = binary::Proc::spawn(|dir| {
        let sections = static_sections(dir, 1000, "");
        std::fs::remove_file(dir.join("tokens")).unwrap();
        sections
    });
    let status = proc.exit_status(WAIT).await;
    let stderr = proc.stderr_text();
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("[StaticAuthenticator] file: cannot read"), "{stderr}");
}
