//! The Prometheus endpoint through a real socket: a known sequence of sessions, then `/metrics`
//! parsed and every series checked; `/healthz` while accepting and while draining; the label
//! values are all from fixed sets.

use crate::common::*;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use remoteproxy::authenticators::{AuthRequest, AuthenticationError, Authenticator, Verdict};
use remoteproxy_wire as slip;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

// ---------------------------------------------------------------------------------------------
// An HTTP/1.1 client and an OpenMetrics text parser, both small and strict.

struct HttpResponse {
    status: u16,
    headers: HashMap<String, String>,
    body: String,
}

/// One request on a fresh connection; the response is read to EOF.
async fn http(addr: SocketAddr, method: &str, path: &str) -> HttpResponse {
    within("an HTTP exchange", async {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let request = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.unwrap();
        let text = String::from_utf8(raw).expect("the response is UTF-8");
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no header end: {text:?}"));
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap();
        assert!(status_line.starts_with("HTTP/1.1 "), "{status_line}");
        let status = status_line.split(' ').nth(1).unwrap().parse().unwrap();
        let headers = lines
            .map(|line| {
                let (name, value) = line.split_once(':').unwrap();
                (name.trim().to_ascii_lowercase(), value.trim().to_string())
            })
            .collect();
        HttpResponse { status, headers, body: body.to_string() }
    })
    .await
}

type Labels = BTreeMap<String, String>;

/// A parsed exposition: every sample, and the `# TYPE` of every family.
#[derive(Debug)]
pub(crate) struct Scrape {
    text: String,
    samples: Vec<(String, Labels, f64)>,
    types: HashMap<String, String>,
}

fn parse_labels(text: &str) -> Labels {
    let mut labels = Labels::new();
    let mut rest = text;
    while !rest.is_empty() {
        let (name, after) = rest.split_once("=\"").unwrap_or_else(|| panic!("bad labels {text:?}"));
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next() {
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c)) => value.push(c),
                    None => panic!("bad escape in {text:?}"),
                },
                Some((i, '"')) => break i,
                Some((_, c)) => value.push(c),
                None => panic!("unterminated label value in {text:?}"),
            }
        };
        assert!(labels.insert(name.to_string(), value).is_none(), "label {name} twice in {text:?}");
        rest = after[end + 1..].strip_prefix(',').unwrap_or(&after[end + 1..]);
    }
    labels
}

fn parse(text: &str) -> Scrape {
    assert!(text.ends_with("# EOF\n"), "an OpenMetrics exposition ends with # EOF: {text}");
    let mut samples = Vec::new();
    let mut types = HashMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            types.insert(name.to_string(), kind.to_string());
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("bad sample line {line:?}"));
        let (name, labels) = match series.split_once('{') {
            Some((name, labels)) => (name, parse_labels(labels.strip_suffix('}').unwrap())),
            None => (series, Labels::new()),
        };
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("bad value in {line:?}"));
        samples.push((name.to_string(), labels, value));
    }
    Scrape { text: text.to_string(), samples, types }
}

impl Scrape {
    /// The value of the series `name{labels}`; fails when it is missing.
    pub(crate) fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.find(name, labels).unwrap_or_else(|| panic!("no series {name}{labels:?} in\n{}", self.text))
    }

    pub(crate) fn find(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let want: Labels = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let mut found = self.samples.iter().filter(|(n, l, _)| n == name && *l == want);
        let value = found.next().map(|(_, _, v)| *v);
        assert!(found.next().is_none(), "series {name}{labels:?} twice");
        value
    }

    /// Every sample of a family (by sample name).
    fn all(&self, name: &str) -> Vec<(&Labels, f64)> {
        self.samples.iter().filter(|(n, _, _)| n == name).map(|(_, l, v)| (l, *v)).collect()
    }
}

async fn scrape(broker: &Broker) -> Scrape {
    let response = http(broker.metrics.expect("metrics enabled"), "GET", "/metrics").await;
    assert_eq!(response.status, 200, "{}", response.body);
    assert_eq!(
        response.headers.get("content-type").map(String::as_str),
        Some("application/openmetrics-text; version=1.0.0; charset=utf-8")
    );
    parse(&response.body)
}

/// Scrapes until `done` holds (bounded by WAIT) and returns that scrape.
pub(crate) async fn scrape_until(broker: &Broker, what: &str, done: impl Fn(&Scrape) -> bool) -> Scrape {
    let deadline = Instant::now() + WAIT;
    loop {
        let scrape = scrape(broker).await;
        if done(&scrape) {
            return scrape;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}; last scrape:\n{}", scrape.text);
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// The brokers.

/// Accepts every token except those starting with `refuse`.
struct Rules;

#[async_trait]
impl Authenticator for Rules {
    fn kind(&self) -> &'static str {
        "rules"
    }

    async fn authenticate(&self, request: &AuthRequest) -> Verdict {
        if request.token.expose_secret().starts_with("refuse") {
            Verdict { error: AuthenticationError::AuthenticationFailed, user_name: None }
        } else {
            Verdict {
                error: AuthenticationError::NoError,
                user_name: Some(format!("user-{}", request.facts.name)),
            }
        }
    }
}

const OUTCOMES: [&str; 6] = ["happy", "lonely", "redundant", "impatient", "errory", "timeout"];
const TRANSPORTS: [&str; 3] = ["TCP", "WebSocket", "unix"];
const RESULTS: [&str; 6] = ["NoError", "Unknown", "Timeout", "Aborted", "AuthenticationFailed", "ProxyError"];

/// Every label value must come from a fixed set: never a token, uuid, name or address.
fn check_label_values(scrape: &Scrape, authenticators: &[&str]) {
    for (name, labels, _) in &scrape.samples {
        for (key, value) in labels {
            let allowed = match key.as_str() {
                "api" => ["v1", "v2"].contains(&value.as_str()),
                "transport" => TRANSPORTS.contains(&value.as_str()),
                "outcome" => OUTCOMES.contains(&value.as_str()),
                "reason" => [
                    "maxConnections",
                    "maxClientsPerServer",
                    "maxConnectionsPerIp",
                    "maxNewConnectionsPerIpPerSecond",
                    "maxPendingHandshakes",
                    "maxTunnelsPerToken",
                    "proxyProtocolTrusted",
                    "proxyProtocolHeader",
                ]
                .contains(&value.as_str()),
                "authenticator" => authenticators.contains(&value.as_str()),
                "result" => RESULTS.contains(&value.as_str()),
                "le" => value == "+Inf" || value.parse::<f64>().is_ok(),
                "kind" => {
                    name == "remoteproxy_tls_handshakes_total"
                        && ["full", "resumed"].contains(&value.as_str())
                }
                "version" => name == "remoteproxy_build_info" && value == env!("CARGO_PKG_VERSION"),
                _ => false,
            };
            assert!(allowed, "unexpected label {key}={value:?} on {name}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// A v2 server that reads SLIP frames.

struct SlipServer {
    client: Client,
    decoder: slip::Decoder,
    frames: Vec<slip::Frame>,
}

impl SlipServer {
    async fn register(broker: &Broker, kind: Kind, uuid: &str) -> SlipServer {
        let mut client = broker.connect_v2(kind).await;
        let response = client
            .call(1, "TunnelProxy.RegisterServer", json!({"serverName": "device", "serverUuid": uuid}))
            .await;
        assert_eq!(response["params"]["tunnelProxyError"], "TunnelProxyErrorNoError", "{response}");
        let mut server = SlipServer { decoder: slip::Decoder::new(1 << 20), frames: Vec::new(), client };
        let early = std::mem::take(&mut server.client.buf);
        server.push(&early);
        server
    }

    fn push(&mut self, data: &[u8]) {
        let frames = &mut self.frames;
        self.decoder.decode(data, |frame| frames.push(frame.expect("valid SLIP from the broker")));
    }

    async fn next_frame(&mut self) -> slip::Frame {
        within("a SLIP frame", async {
            loop {
                if !self.frames.is_empty() {
                    return self.frames.remove(0);
                }
                let ClientWire::Stream(stream) = &mut self.client.wire else { panic!("stream servers only") };
                let mut buf = [0u8; 4096];
                let n = stream.read(&mut buf).await.unwrap();
                assert!(n > 0, "the broker closed the server");
                self.push(&buf[..n]);
            }
        })
        .await
    }

    /// The next notification on address 0 (skipping data frames would hide a bug: none expected).
    async fn notification(&mut self) -> Value {
        let frame = self.next_frame().await;
        assert_eq!(frame.address, 0, "{frame:?}");
        serde_json::from_slice(&frame.payload).unwrap()
    }

    async fn collect(&mut self, address: u16, n: usize) -> Vec<u8> {
        let mut data = Vec::new();
        while data.len() < n {
            let frame = self.next_frame().await;
            assert_eq!(frame.address, address, "{frame:?}");
            data.extend_from_slice(&frame.payload);
        }
        assert_eq!(data.len(), n);
        data
    }

    async fn send(&mut self, address: u16, payload: &[u8]) {
        self.client.send_bytes(&slip::encode(address, payload)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// The known sequence.

fn v1(transport: &str) -> [(&'static str, &str); 2] {
    [("api", "v1"), ("transport", transport)]
}

async fn exchange(from: &mut Client, to: &mut Client, n: usize) {
    let data = random_bytes(n);
    from.send_bytes(&data).await;
    assert_eq!(to.recv_data(n).await, data);
}

#[tokio::test]
async fn metrics_count_a_known_sequence_of_sessions() {
    let broker = Broker::builder()
        .authenticator(Arc::new(Rules))
        .config(|c| {
            c.metrics.enabled = true;
            c.timeouts.alone = Duration::from_millis(1500);
            c.server.max_clients_per_server = 1;
        })
        .start()
        .await;

    // Before anything: every fixed series is there at zero.
    let before = scrape(&broker).await;
    for outcome in OUTCOMES {
        assert_eq!(before.get("remoteproxy_sessions_total", &[("outcome", outcome)]), 0.0);
    }
    assert_eq!(before.types["remoteproxy_connections"], "counter");
    assert_eq!(before.types["remoteproxy_connections_active"], "gauge");
    assert_eq!(before.types["remoteproxy_tunnels_active"], "gauge");
    assert_eq!(before.types["remoteproxy_tunnel_setup_seconds"], "histogram");
    assert_eq!(before.get("remoteproxy_build_info", &[("version", env!("CARGO_PKG_VERSION"))]), 1.0);

    // Two tunnels with known byte counts, both open at once.
    let (mut a1, mut a2) = tunnel(&broker, Kind::Tcp, Kind::WebSocket, "token-tunnel-a").await;
    let (mut b1, mut b2) = tunnel(&broker, Kind::Unix, Kind::Tcp, "token-tunnel-b").await;
    exchange(&mut a1, &mut a2, 1000).await;
    exchange(&mut a2, &mut a1, 500).await;
    exchange(&mut b1, &mut b2, 200).await;
    let during = scrape_until(&broker, "1700 bytes relayed", |s| {
        s.get("remoteproxy_relayed_bytes_total", &[("api", "v1")]) == 1700.0
    })
    .await;
    assert_eq!(during.get("remoteproxy_tunnels_active", &[]), 2.0);
    assert_eq!(during.get("remoteproxy_tunnels_total", &[]), 2.0);
    assert_eq!(during.get("remoteproxy_connections_active", &v1("TCP")), 2.0);
    assert_eq!(during.get("remoteproxy_connections_active", &v1("WebSocket")), 1.0);
    assert_eq!(during.get("remoteproxy_connections_active", &v1("unix")), 1.0);
    drop((a1, a2, b1, b2));

    // A lonely client, and a duplicate of its uuid that is refused (redundant).
    let mut lonely = broker.connect(Kind::Tcp).await;
    assert_eq!(
        lonely.authenticate("uuid-lonely", "lonely", "token-lonely", Some("n1")).await,
        "AuthenticationErrorNoError"
    );
    let mut duplicate = broker.connect(Kind::WebSocket).await;
    assert_eq!(
        duplicate.authenticate("uuid-lonely", "impostor", "token-lonely", Some("n1")).await,
        "AuthenticationErrorProxyError"
    );
    duplicate.closed().await;
    lonely.closed().await;

    // An impatient client: data before its tunnel.
    let mut impatient = broker.connect(Kind::Unix).await;
    assert_eq!(
        impatient.authenticate("uuid-impatient", "impatient", "token-impatient", None).await,
        "AuthenticationErrorNoError"
    );
    impatient.send_bytes(b"too early").await;
    impatient.closed().await;

    // Protocol errors: bad JSON, and a refused token.
    let mut bad_json = broker.connect(Kind::Tcp).await;
    bad_json.send_text("this is not json\n").await;
    bad_json.closed().await;
    let mut refused = broker.connect(Kind::WebSocket).await;
    assert_eq!(
        refused.authenticate("uuid-refused", "refused", "refuse-this-token", None).await,
        "AuthenticationErrorAuthenticationFailed"
    );
    refused.closed().await;

    // A TLS handshake that fails: plain bytes on the TLS port.
    let mut plain = TcpStream::connect(broker.tcp).await.unwrap();
    plain.write_all(b"{\"id\":0,\"method\":\"RemoteProxy.Hello\"}\n").await.unwrap();
    within("the broker to drop the plain connection", async {
        let mut sink = [0u8; 1024];
        while let Ok(n) = plain.read(&mut sink).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;

    // TunnelProxy: a server and a client, with known payloads both ways.
    let server_uuid = uuid::Uuid::new_v4().to_string();
    let mut server = SlipServer::register(&broker, Kind::Unix, &server_uuid).await;
    let mut client = broker.connect_v2(Kind::Tcp).await;
    let response = client
        .call(
            2,
            "TunnelProxy.RegisterClient",
            json!({"clientName": "app", "clientUuid": uuid::Uuid::new_v4().to_string(), "serverUuid": server_uuid}),
        )
        .await;
    assert_eq!(response["params"]["tunnelProxyError"], "TunnelProxyErrorNoError", "{response}");
    let connected = server.notification().await;
    assert_eq!(connected["notification"], "TunnelProxy.ClientConnected", "{connected}");
    let address = connected["params"]["socketAddress"].as_u64().unwrap() as u16;
    let up = random_bytes(300);
    client.send_bytes(&up).await;
    assert_eq!(server.collect(address, 300).await, up);
    let down: Vec<u8> = (0..400).map(|i| [0xC0, 0xDB, b'x', b'y'][i % 4]).collect();
    server.send(address, &down).await;
    assert_eq!(client.read_exact(400).await, down);
    // A second client is one too many for this server.
    let mut extra = broker.connect_v2(Kind::WebSocket).await;
    let response = extra
        .call(
            2,
            "TunnelProxy.RegisterClient",
            json!({"clientName": "app", "clientUuid": uuid::Uuid::new_v4().to_string(), "serverUuid": server_uuid}),
        )
        .await;
    assert_eq!(response["params"]["tunnelProxyError"], "TunnelProxyErrorInternalServerError", "{response}");
    extra.closed().await;
    drop(client);
    drop(server);

    // Everything has ended: check every series.
    let s = scrape_until(&broker, "every connection to end", |s| {
        s.all("remoteproxy_connections_active").iter().all(|(_, v)| *v == 0.0)
            && s.get("remoteproxy_sessions_total", &[("outcome", "happy")]) >= 4.0
    })
    .await;
    check_label_values(&s, &["rules"]);
    for secret in ["token-tunnel-a", "token-lonely", "refuse-this-token", "uuid-lonely", "127.0.0.1", "user-"]
    {
        assert!(!s.text.contains(secret), "{secret} in the metrics:\n{}", s.text);
    }

    let expected_connections = [
        (v1("TCP"), 4.0),       // a1, b2, lonely, bad_json
        (v1("WebSocket"), 3.0), // a2, duplicate, refused
        (v1("unix"), 2.0),      // b1, impatient
        ([("api", "v2"), ("transport", "TCP")], 1.0),
        ([("api", "v2"), ("transport", "WebSocket")], 1.0),
        ([("api", "v2"), ("transport", "unix")], 1.0),
    ];
    for (labels, count) in expected_connections {
        assert_eq!(s.get("remoteproxy_connections_total", &labels), count, "{labels:?}");
        assert_eq!(s.get("remoteproxy_connections_active", &labels), 0.0, "{labels:?}");
    }
    let expected_sessions = [
        ("happy", 4.0),
        ("lonely", 1.0),
        ("redundant", 1.0),
        ("impatient", 1.0),
        ("errory", 2.0),
        ("timeout", 0.0),
    ];
    for (outcome, count) in expected_sessions {
        assert_eq!(s.get("remoteproxy_sessions_total", &[("outcome", outcome)]), count, "{outcome}");
    }
    // a1, a2, b1, b2, lonely, duplicate, impatient; one refusal.
    let expected_results = [("NoError", 7.0), ("AuthenticationFailed", 1.0)];
    for result in RESULTS {
        let count = expected_results.iter().find(|(r, _)| *r == result).map_or(0.0, |(_, c)| *c);
        let labels = [("authenticator", "rules"), ("result", result)];
        assert_eq!(s.get("remoteproxy_authentications_total", &labels), count, "{result}");
    }
    assert_eq!(s.get("remoteproxy_tunnels_total", &[]), 2.0);
    assert_eq!(s.get("remoteproxy_tunnels_active", &[]), 0.0);
    assert_eq!(s.get("remoteproxy_relayed_bytes_total", &[("api", "v1")]), 1700.0);
    assert_eq!(s.get("remoteproxy_relayed_bytes_total", &[("api", "v2")]), 700.0);
    assert_eq!(s.get("remoteproxy_connections_refused_total", &[("reason", "maxConnections")]), 0.0);
    assert_eq!(s.get("remoteproxy_connections_refused_total", &[("reason", "maxClientsPerServer")]), 1.0);

    // The setup histogram: two observations, cumulative buckets ending in +Inf.
    assert_eq!(s.get("remoteproxy_tunnel_setup_seconds_count", &[]), 2.0);
    let sum = s.get("remoteproxy_tunnel_setup_seconds_sum", &[]);
    assert!(sum > 0.0 && sum < 2.0 * WAIT.as_secs_f64(), "{sum}");
    let mut buckets: Vec<(f64, f64)> = s
        .all("remoteproxy_tunnel_setup_seconds_bucket")
        .into_iter()
        .map(|(labels, count)| (labels["le"].parse::<f64>().unwrap_or(f64::INFINITY), count))
        .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    assert!(buckets.len() >= 10, "{buckets:?}");
    assert!(buckets[0].0 <= 0.001 && buckets[buckets.len() - 2].0 >= 10.0, "{buckets:?}");
    assert!(buckets.windows(2).all(|w| w[0].1 <= w[1].1), "cumulative: {buckets:?}");
    assert_eq!(buckets.last().unwrap(), &(f64::INFINITY, 2.0));
    assert_eq!(s.get("remoteproxy_tls_handshake_failures_total", &[]), 1.0);

    broker.stop().await;
}

#[tokio::test]
async fn refusals_by_max_connections_and_timeouts_are_counted() {
    let broker = Broker::builder()
        .tls(false)
        .config(|c| {
            c.metrics.enabled = true;
            c.server.max_connections = 1;
            c.timeouts.inactive = Duration::from_secs(2);
        })
        .start()
        .await;
    let mut holder = broker.connect(Kind::Tcp).await;
    assert_eq!(holder.hello().await["status"], "success");
    let mut second = broker.connect(Kind::Tcp).await;
    assert_eq!(second.closed().await, Closed::Eof);
    // The holder says nothing more: the inactive timer ends it.
    holder.closed().await;
    let s = scrape_until(&broker, "the timeout", |s| {
        s.get("remoteproxy_sessions_total", &[("outcome", "timeout")]) == 1.0
    })
    .await;
    assert_eq!(s.get("remoteproxy_connections_refused_total", &[("reason", "maxConnections")]), 1.0);
    assert_eq!(s.get("remoteproxy_connections_total", &v1("TCP")), 1.0);
    assert_eq!(s.get("remoteproxy_tls_handshake_failures_total", &[]), 0.0);
    for outcome in OUTCOMES.into_iter().filter(|o| *o != "timeout") {
        assert_eq!(s.get("remoteproxy_sessions_total", &[("outcome", outcome)]), 0.0, "{outcome}");
    }
    check_label_values(&s, &[]);
    broker.stop().await;
}

#[tokio::test]
async fn healthz_is_ok_while_accepting_and_503_while_draining() {
    let mut broker = Broker::builder()
        .config(|c| {
            c.metrics.enabled = true;
            c.server.shutdown_grace_period = Duration::from_secs(8);
        })
        .start()
        .await;
    let addr = broker.metrics.unwrap();
    let ok = http(addr, "GET", "/healthz").await;
    assert_eq!((ok.status, ok.body.as_str()), (200, "ok\n"));
    assert!(ok.headers["content-type"].starts_with("text/plain"), "{:?}", ok.headers);

    let head = http(addr, "HEAD", "/healthz").await;
    assert_eq!((head.status, head.body.as_str()), (200, ""));
    for path in ["/", "/metrics/", "/healthz/x", "/favicon.ico", "/metrics?x"] {
        let expected = if path == "/metrics?x" { 200 } else { 404 };
        assert_eq!(http(addr, "GET", path).await.status, expected, "{path}");
    }
    assert_eq!(http(addr, "POST", "/metrics").await.status, 405);
    assert_eq!(http(addr, "DELETE", "/healthz").await.status, 405);

    // A tunnel keeps the drain going; meanwhile /healthz says 503 and /metrics still answers.
    let (mut a, mut b) = tunnel(&broker, Kind::Tcp, Kind::Tcp, "token-drain").await;
    broker.signal_stop();
    let deadline = Instant::now() + WAIT;
    loop {
        let response = http(addr, "GET", "/healthz").await;
        if response.status == 503 {
            assert_eq!(response.body, "draining\n");
            break;
        }
        assert_eq!(response.status, 200);
        assert!(Instant::now() < deadline, "/healthz never said 503");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let during = scrape(&broker).await;
    assert_eq!(during.get("remoteproxy_tunnels_active", &[]), 1.0);
    exchange(&mut a, &mut b, 10).await;
    assert_eq!(http(addr, "GET", "/healthz").await.status, 503);

    // The tunnel ends, the drain ends, the endpoint closes.
    drop((a, b));
    assert!(broker.stopped_within(WAIT).await, "the broker did not stop");
    assert!(TcpStream::connect(addr).await.is_err(), "the metrics endpoint still accepts");
}

#[tokio::test]
async fn a_slow_client_cannot_hold_the_endpoint() {
    let broker = Broker::builder().tls(false).config(|c| c.metrics.enabled = true).start().await;
    let addr = broker.metrics.unwrap();
    // Many connections that never send a request: the endpoint keeps answering real ones (a
    // full endpoint closes new connections; idle ones are dropped after the header timeout).
    let mut idle = Vec::new();
    for _ in 0..40 {
        idle.push(TcpStream::connect(addr).await.unwrap());
    }
    let deadline = Instant::now() + WAIT;
    loop {
        let answered = tokio::time::timeout(Duration::from_secs(1), async {
            let mut stream = TcpStream::connect(addr).await.ok()?;
            stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await.ok()?;
            let mut raw = Vec::new();
            stream.read_to_end(&mut raw).await.ok()?;
            Some(String::from_utf8_lossy(&raw).starts_with("HTTP/1.1 200"))
        })
        .await;
        if let Ok(Some(true)) = answered {
            break;
        }
        assert!(Instant::now() < deadline, "the endpoint stayed blocked by idle connections");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // An idle connection that was served is closed by the broker after the header timeout.
    let mut one = idle.remove(0);
    let mut sink = [0u8; 64];
    let closed = tokio::time::timeout(Duration::from_secs(20), one.read(&mut sink)).await;
    assert!(matches!(closed, Ok(Ok(_)) | Ok(Err(_))), "an idle connection was kept open");
    broker.stop().await;
}

/// With TLS on, the served certificate's expiry is exported as Unix time, so an alert can fire
/// before it runs out.
#[tokio::test]
async fn the_certificate_expiry_is_exported() {
    let broker = Broker::builder().fixture_certificate().config(|c| c.metrics.enabled = true).start().await;
    let scrape = scrape(&broker).await;
    let (_, leaf) = x509_parser::parse_x509_certificate(broker.certificates[0].as_ref()).unwrap();
    let expected = leaf.validity().not_after.timestamp() as f64;
    assert_eq!(scrape.get("remoteproxy_tls_certificate_expiry_seconds", &[]), expected);
    assert_eq!(
        scrape.types.get("remoteproxy_tls_certificate_expiry_seconds").map(String::as_str),
        Some("gauge")
    );
}

// ---------------------------------------------------------------------------------------------
// The operators' extras in packaging/monitoring: every metric they name is real.

/// The `remoteproxy_*` metric names in a PromQL expression.
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = expr;
    while let Some(at) = rest.find("remoteproxy_") {
        let tail = &rest[at..];
        let end = tail.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(tail.len());
        names.push(tail[..end].to_string());
        rest = &tail[end..];
    }
    names
}

#[tokio::test]
async fn the_alert_rules_and_the_dashboard_name_only_metrics_the_broker_exports() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("packaging/monitoring");
    let rules_path = root.join("alerts.yml");
    let rules: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(&rules_path).unwrap()).unwrap();
    let mut exprs = Vec::new();
    let mut alerts = Vec::new();
    for group in rules["groups"].as_sequence().expect("groups") {
        for rule in group["rules"].as_sequence().expect("rules") {
            let alert = rule["alert"].as_str().expect("every rule is an alert").to_string();
            assert!(rule["labels"]["severity"].as_str().is_some(), "{alert}: a severity");
            assert!(rule["annotations"]["summary"].as_str().is_some(), "{alert}: a summary");
            exprs.push(rule["expr"].as_str().expect("an expr").to_string());
            alerts.push(alert);
        }
    }
    for wanted in [
        "RemoteproxyDown",
        "RemoteproxyCertificateExpiresSoon",
        "RemoteproxyAuthenticatorFailing",
        "RemoteproxyLimitsRefusing",
    ] {
        assert!(alerts.iter().any(|alert| alert == wanted), "no {wanted} in {alerts:?}");
    }
    let dashboard: Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("grafana-dashboard.json")).unwrap()).unwrap();
    let panels = dashboard["panels"].as_array().expect("panels");
    assert!(panels.len() >= 8, "{} panels", panels.len());
    for panel in panels {
        for target in panel["targets"].as_array().expect("targets") {
            exprs.push(target["expr"].as_str().expect("an expr").to_string());
        }
    }

    let broker = Broker::builder().fixture_certificate().config(|c| c.metrics.enabled = true).start().await;
    // One tunnel, so that the series that appear with their first event (an authenticator's
    // results) are there too.
    let (mut a, mut b) = tunnel(&broker, Kind::Tcp, Kind::WebSocket, "monitoring").await;
    a.send_bytes(b"x").await;
    assert_eq!(b.recv_data(1).await, b"x");
    let text = scrape_until(&broker, "an authentication", |s| {
        !s.all("remoteproxy_authentications_total").is_empty()
    })
    .await
    .text;
    let mut names: Vec<String> = exprs.iter().flat_map(|expr| metric_names(expr)).collect();
    names.sort();
    names.dedup();
    assert!(names.len() >= 10, "{names:?}");
    for name in &names {
        let exported = text.lines().any(|line| {
            line.strip_prefix(name.as_str())
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        });
        assert!(exported, "{name} is named by the rules or the dashboard but not exported:\n{text}");
    }

    // Where Prometheus' own checker is installed, it has the last word on the rules.
    if let Ok(output) =
        std::process::Command::new("promtool").arg("check").arg("rules").arg(&rules_path).output()
    {
        assert!(output.status.success(), "promtool: {}", String::from_utf8_lossy(&output.stdout));
    }
}
