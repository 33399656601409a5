//! The configuration reader and build against every rule of the format and every key.

use super::*;
use crate::config::schema::{keys_of, known_sections};
use crate::config::{
    AwsLambdaSettings, CertificateSettings, JwtSettings, KindSettings, StaticSettings, SubjectField,
    ThrottleSettings,
};
use remoteproxy_authenticators::config::AWS_DEFAULT_CREDENTIALS_URL;
use std::net::{Ipv4Addr, Ipv6Addr};

const FILE: &str = "/etc/remoteproxy.conf";

fn parse(text: &str) -> Result<Config, ConfigError> {
    parse_str(text, Path::new(FILE))
}

/// The one-line message of a failing parse.
fn error(text: &str) -> String {
    let message = parse(text).expect_err("should fail").to_string();
    assert!(!message.contains('\n'), "not one line: {message}");
    message
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

fn v4(a: u8, b: u8, c: u8, d: u8, port: u16) -> Option<SocketAddr> {
    Some(SocketAddr::new(IpAddr::V4(Ipv4Addr::new(a, b, c, d)), port))
}

fn v6(ip: Ipv6Addr, port: u16) -> Option<SocketAddr> {
    Some(SocketAddr::new(IpAddr::V6(ip), port))
}

#[test]
fn reference_1_8_4_file_loads() {
    let path = fixture("nymea-remoteproxy-1.8.4.conf");
    let config = load_file(&path).unwrap();
    let defaults = Config::default();
    assert_eq!(config.source.as_deref(), Some(path.as_path()));
    assert_eq!(config.server.name, "nymea-remoteproxy");
    assert!(!config.server.write_logs);
    assert_eq!(config.server.log_file, PathBuf::from("/var/log/nymea-remoteproxy.log"));
    assert!(!config.server.log_engine_enabled);
    assert_eq!(config.server.monitor_socket, Some(PathBuf::from("/tmp/nymea-remoteproxy-monitor.sock")));
    assert_eq!(config.timeouts.json_rpc, Duration::from_millis(10000));
    assert_eq!(config.timeouts.authentication, Duration::from_millis(8000));
    assert_eq!(config.timeouts.inactive, Duration::from_millis(8000));
    assert_eq!(config.timeouts.alone, Duration::from_millis(8000));
    // No [Authentication] type but an [AWS] section: aws-lambda, as the reference does.
    let kind = config.authentication.as_ref().map(|a| &a.kind);
    let Some(KindSettings::AwsLambda(aws)) = kind else { panic!("aws-lambda: {kind:?}") };
    assert_eq!(aws.function, "system-services-authorizer-dev-checkToken");
    assert!(config.authentication_implied);
    assert!(config.tls.enabled);
    assert_eq!(config.tls.certificate, Some(PathBuf::from("/etc/ssl/certs/ssl-cert-snakeoil.pem")));
    assert_eq!(config.tls.certificate_key, Some(PathBuf::from("/etc/ssl/private/ssl-cert-snakeoil.key")));
    assert_eq!(config.tls.certificate_chain, None);
    assert_eq!(config.listeners.websocket, v4(127, 0, 0, 1, 443));
    assert_eq!(config.listeners.tcp, v4(127, 0, 0, 1, 80));
    assert_eq!(config.listeners.unix, defaults.listeners.unix);
    assert_eq!(config.tunnel_proxy_listeners.websocket, v4(127, 0, 0, 1, 2212));
    assert_eq!(config.tunnel_proxy_listeners.tcp, v4(127, 0, 0, 1, 2213));
    assert_eq!(config.tunnel_proxy_listeners.unix, None);
    // Keys the reference does not have keep our defaults.
    assert_eq!(config.server.max_message_size, defaults.server.max_message_size);
    assert_eq!(config.server.max_connections, defaults.server.max_connections);
    assert_eq!(config.timeouts.tunnel_idle, None);
    assert_eq!(config.timeouts.handshake_deadline, defaults.timeouts.handshake_deadline);
}

#[test]
fn empty_text_gives_the_defaults() {
    assert_eq!(parse("").unwrap(), Config::default());
    assert_eq!(parse("; only a comment\n\n# another\n[General]\n").unwrap(), Config::default());
}

#[test]
fn every_key_of_ours_parses() {
    let config = parse(
        "[ProxyServer]\n\
         maxMessageSize=256\n\
         tunnelIdleTimeout=60000\n\
         maxConnections=1\n\
         shutdownGracePeriod=0\n\
         handshakeDeadline=1\n\
         tlsHandshakeTimeout=2500\n\
         maxClientsPerServer=3\n\
         tunnelProxyServerTimeout=30000\n\
         proxyEnabled=true\n\
         [UnixSocketServer]\n\
         unixSocketFileName=/tmp/proxy.sock\n\
         [UnixSocketServerTunnelProxy]\n\
         unixSocketFileName=/tmp/tunnel.sock\n\
         [Authentication]\n\
         type=mock\n",
    )
    .unwrap();
    assert_eq!(config.server.max_message_size, 256);
    assert_eq!(config.timeouts.tunnel_idle, Some(Duration::from_millis(60000)));
    assert_eq!(config.server.max_connections, 1);
    assert_eq!(config.server.shutdown_grace_period, Duration::ZERO);
    assert_eq!(config.timeouts.handshake_deadline, Duration::from_millis(1));
    assert_eq!(config.timeouts.tls_handshake, Duration::from_millis(2500));
    assert_eq!(config.server.max_clients_per_server, 3);
    assert_eq!(config.timeouts.tunnel_proxy_server, Duration::from_millis(30000));
    assert_eq!(config.listeners.unix, Some(PathBuf::from("/tmp/proxy.sock")));
    assert_eq!(config.tunnel_proxy_listeners.unix, Some(PathBuf::from("/tmp/tunnel.sock")));
    assert_eq!(config.authentication.unwrap().kind, KindSettings::Mock);
    assert!(config.listeners.websocket.is_some());

    let config = parse("[ProxyServer]\ntunnelIdleTimeout=0\n").unwrap();
    assert_eq!(config.timeouts.tunnel_idle, None);
}

#[test]
fn proxy_disabled_turns_off_the_v1_listeners() {
    let config = parse("[ProxyServer]\nproxyEnabled=false\n").unwrap();
    assert_eq!(config.listeners.websocket, None);
    assert_eq!(config.listeners.tcp, None);
    assert_eq!(config.listeners.unix, None);
    assert_eq!(config.tunnel_proxy_listeners, Config::default().tunnel_proxy_listeners);
    // A mistake in a disabled listener's section is still reported.
    assert_eq!(
        error("[ProxyServer]\nproxyEnabled=false\n[TcpServer]\nport=x\n"),
        "/etc/remoteproxy.conf: [TcpServer] port: \"x\" is not a port number (0 to 65535)"
    );
}

#[test]
fn bools_accept_the_usual_spellings() {
    for (text, expected) in [
        ("true", true),
        ("TRUE", true),
        ("1", true),
        ("yes", true),
        ("On", true),
        ("false", false),
        ("False", false),
        ("0", false),
        ("no", false),
        ("OFF", false),
    ] {
        let config = parse(&format!("[ProxyServer]\nwriteLogs={text}\n")).unwrap();
        assert_eq!(config.server.write_logs, expected, "{text}");
    }
}

#[test]
fn syntax_details() {
    let config = parse(
        "\u{feff}  ; indented comment\r\n\
         [ SSL ]\r\n\
         \tenabled = false \r\n\
         [ProxyServer]\r\n\
         name = \" spaced, and; quoted \\\"name\\\" \"\r\n\
         logFile=/tmp/a\\\\b\r\n\
         name=\"last wins\"\r\n\
         [SSL]\r\n\
         certificate=\r\n",
    )
    .unwrap();
    assert!(!config.tls.enabled);
    assert_eq!(config.tls.certificate, None);
    assert_eq!(config.server.name, "last wins");
    assert_eq!(config.server.log_file, PathBuf::from("/tmp/a\\b"));

    let config = parse("[ProxyServer]\nname = \" spaced, and; \\\"quoted\\\" \"\n").unwrap();
    assert_eq!(config.server.name, " spaced, and; \"quoted\" ");
    let config = parse("[ProxyServer]\nname=a=b # not a comment\n").unwrap();
    assert_eq!(config.server.name, "a=b # not a comment");
}

#[test]
fn syntax_errors_have_line_numbers() {
    assert_eq!(
        error("[ProxyServer]\nname=x\nwriteLogs\n"),
        "/etc/remoteproxy.conf: line 3: expected \"key=value\", a \"[Section]\" header or a comment (';' or '#')"
    );
    assert_eq!(
        error("\n[ProxyServer\n"),
        "/etc/remoteproxy.conf: line 2: a section header must be \"[Name]\" with nothing after the ']'"
    );
    assert_eq!(error("[]\n"), "/etc/remoteproxy.conf: line 1: empty section name \"[]\"");
    assert_eq!(error("[ProxyServer]\n=x\n"), "/etc/remoteproxy.conf: line 2: missing key name before '='");
    assert_eq!(
        error("[ProxyServer]\nname=\"open\n"),
        "/etc/remoteproxy.conf: line 2: missing closing double quote"
    );
    assert_eq!(
        error("[ProxyServer]\nname=\"a\" b\n"),
        "/etc/remoteproxy.conf: line 2: text after the closing double quote"
    );
}

#[test]
fn unknown_key() {
    // The message lists every known key of the section, in schema order.
    let message = error("[ProxyServer]\ninactivTimeout=8000\n");
    let known = keys_of("ProxyServer").unwrap().join(", ");
    assert_eq!(
        message,
        format!("/etc/remoteproxy.conf: [ProxyServer] inactivTimeout: unknown key (known keys: {known})")
    );
    assert!(known.starts_with("name, writeLogs, logFile, logEngineEnabled, monitorSocket, jsonRpcTimeout"));
    // Keys are case-sensitive, as in the reference.
    assert!(
        error("[SSL]\nEnabled=true\n").starts_with(
            "/etc/remoteproxy.conf: [SSL] Enabled: unknown key (known keys: enabled, certificate,"
        )
    );
    // Keys before the first section belong to Qt's [General] group.
    assert_eq!(
        error("name=x\n[ProxyServer]\n"),
        format!(
            "/etc/remoteproxy.conf: [General] name: unknown key (keys must be inside a section; \
             known sections: {})",
            known_sections()
        )
    );
}

#[test]
fn unknown_section() {
    assert_eq!(
        error("[ProxyServer]\nname=x\n[Foo]\n"),
        format!("/etc/remoteproxy.conf: [Foo]: unknown section (known sections: {})", known_sections())
    );
    assert!(known_sections().starts_with("ProxyServer, SSL, WebSocketServer, TcpServer, UnixSocketServer"));
    assert!(error("[ssl]\nenabled=true\n").starts_with("/etc/remoteproxy.conf: [ssl]: unknown section"));
}

#[test]
fn bad_bool() {
    assert_eq!(
        error("[SSL]\nenabled=maybe\n"),
        "/etc/remoteproxy.conf: [SSL] enabled: \"maybe\" is not a boolean (use true or false)"
    );
}

#[test]
fn bad_numbers() {
    assert_eq!(
        error("[ProxyServer]\ninactiveTimeout=8s\n"),
        "/etc/remoteproxy.conf: [ProxyServer] inactiveTimeout: \"8s\" is not a whole number of milliseconds"
    );
    assert_eq!(
        error("[ProxyServer]\ninactiveTimeout=-1\n"),
        "/etc/remoteproxy.conf: [ProxyServer] inactiveTimeout: \"-1\" is not a whole number of milliseconds"
    );
    assert_eq!(
        error("[ProxyServer]\ninactiveTimeout=\n"),
        "/etc/remoteproxy.conf: [ProxyServer] inactiveTimeout: \"\" is not a whole number of milliseconds"
    );
    assert_eq!(
        error("[ProxyServer]\nmaxConnections=+5\n"),
        "/etc/remoteproxy.conf: [ProxyServer] maxConnections: \"+5\" is not a whole number"
    );
    assert_eq!(
        error("[ProxyServer]\nmaxMessageSize=99999999999999999999999\n"),
        "/etc/remoteproxy.conf: [ProxyServer] maxMessageSize: \"99999999999999999999999\" is too large"
    );
    assert_eq!(
        error("[ProxyServer]\naloneTimeout=31536000001\n"),
        "/etc/remoteproxy.conf: [ProxyServer] aloneTimeout: \"31536000001\" is too large \
         (at most 31536000000 milliseconds)"
    );
    assert_eq!(
        error("[ProxyServer]\nmaxMessageSize=255\n"),
        "/etc/remoteproxy.conf: [ProxyServer] maxMessageSize: must be at least 256 bytes"
    );
    assert_eq!(
        error("[ProxyServer]\nmaxConnections=0\n"),
        "/etc/remoteproxy.conf: [ProxyServer] maxConnections: must be at least 1"
    );
}

#[test]
fn zero_timeouts_are_rejected() {
    for key in [
        "jsonRpcTimeout",
        "authenticationTimeout",
        "inactiveTimeout",
        "aloneTimeout",
        "handshakeDeadline",
        "tlsHandshakeTimeout",
    ] {
        assert_eq!(
            error(&format!("[ProxyServer]\n{key}=0\n")),
            format!("/etc/remoteproxy.conf: [ProxyServer] {key}: must be greater than 0 milliseconds")
        );
    }
}

#[test]
fn empty_log_file_is_rejected() {
    assert_eq!(
        error("[ProxyServer]\nlogFile=\n"),
        "/etc/remoteproxy.conf: [ProxyServer] logFile: must not be empty (give a file path)"
    );
    let config = parse("[ProxyServer]\nmonitorSocket=\n").unwrap();
    assert_eq!(config.server.monitor_socket, None);
}

#[test]
fn hosts_and_ports() {
    let config = parse(
        "[WebSocketServer]\nhost=::1\nport=0\n\
         [TcpServer]\nhost=[::]\nport=65535\n\
         [WebSocketServerTunnelProxy]\nhost=0.0.0.0\n\
         [TcpServerTunnelProxy]\nport=7000\n",
    )
    .unwrap();
    assert_eq!(config.listeners.websocket, v6(Ipv6Addr::LOCALHOST, 0));
    assert_eq!(config.listeners.tcp, v6(Ipv6Addr::UNSPECIFIED, 65535));
    // Only one of host/port given: the other keeps its default.
    assert_eq!(config.tunnel_proxy_listeners.websocket, v4(0, 0, 0, 0, 2212));
    assert_eq!(config.tunnel_proxy_listeners.tcp, v4(127, 0, 0, 1, 7000));

    let config = parse("[WebSocketServer]\nhost=[fe80::1]\nport=1\n").unwrap();
    assert_eq!(config.listeners.websocket, v6("fe80::1".parse().unwrap(), 1));
}

#[test]
fn empty_host_disables_the_listener() {
    let config = parse("[TcpServer]\nhost=\nport=1213\n[UnixSocketServer]\nunixSocketFileName=\n").unwrap();
    assert_eq!(config.listeners.tcp, None);
    assert_eq!(config.listeners.unix, None);
    assert!(config.listeners.websocket.is_some());
}

#[test]
fn bad_hosts_and_ports() {
    assert_eq!(
        error("[TcpServer]\nhost=localhost\n"),
        "/etc/remoteproxy.conf: [TcpServer] host: \"localhost\" is not an IP address literal \
         (for example 127.0.0.1, 0.0.0.0, ::1 or [::])"
    );
    for host in ["[127.0.0.1]", "[::1", "::1]", "1.2.3", "fe80::1%eth0", "::g"] {
        let message = error(&format!("[WebSocketServer]\nhost={host}\n"));
        assert!(message.contains("is not an IP address literal"), "{host}: {message}");
    }
    for port in ["65536", "-1", "http", "", " 1x"] {
        let message = error(&format!("[TcpServerTunnelProxy]\nport={port}\n"));
        assert!(
            message.starts_with("/etc/remoteproxy.conf: [TcpServerTunnelProxy] port: ")
                && message.ends_with("is not a port number (0 to 65535)"),
            "{port}: {message}"
        );
    }
}

#[test]
fn two_listeners_on_one_address_are_rejected() {
    assert_eq!(
        error("[TcpServer]\nport=1212\n"),
        "/etc/remoteproxy.conf: [TcpServer] port: 127.0.0.1:1212 is already used by [WebSocketServer]"
    );
    // Ephemeral ports never collide.
    parse("[TcpServer]\nport=0\n[WebSocketServer]\nport=0\n").unwrap();
}

fn kind(text: &str) -> KindSettings {
    parse(text).unwrap().authentication.expect("an authenticator").kind
}

#[test]
fn authenticator_types() {
    assert_eq!(kind("[Authentication]\ntype=mock\n"), KindSettings::Mock);
    assert_eq!(parse("[Authentication]\ntype=\n").unwrap().authentication, None);
    assert_eq!(
        error("[Authentication]\ntype=ldap\n"),
        "/etc/remoteproxy.conf: [Authentication] type: \"ldap\" is not an authenticator type \
         (available: mock, aws-lambda, http, static, jwt, certificate)"
    );
}

#[test]
fn aws_lambda_takes_the_reference_keys_and_defaults() {
    let reference = std::fs::read_to_string(fixture("nymea-remoteproxy-1.8.4.conf")).unwrap();
    let with_type = format!("{reference}\n[Authentication]\ntype=aws-lambda\n");
    assert_eq!(
        kind(&with_type),
        KindSettings::AwsLambda(AwsLambdaSettings {
            region: "eu-west-1".into(),
            function: "system-services-authorizer-dev-checkToken".into(),
            credentials_url: AWS_DEFAULT_CREDENTIALS_URL.into(),
            lambda_endpoint: None,
        })
    );
    let KindSettings::AwsLambda(aws) =
        kind("[Authentication]\ntype=aws-lambda\n[AWS]\nregion=\nlambdaEndpoint=http://127.0.0.1:9\n")
    else {
        panic!()
    };
    assert_eq!(aws.region, "eu-west-1", "empty means the default");
    assert_eq!(aws.lambda_endpoint.as_deref(), Some("http://127.0.0.1:9"));
}

#[test]
fn http_static_jwt_and_certificate_sections() {
    let KindSettings::Http(http) = kind(
        "[Authentication]\ntype=http\n[HttpAuthenticator]\nurl=https://auth.example/check\n\
         authorization=Bearer s3cret\ncaCertificate=/etc/ca.pem\n",
    ) else {
        panic!()
    };
    assert_eq!(http.url, "https://auth.example/check");
    assert_eq!(http.authorization.as_ref().map(|s| s.expose_secret()), Some("Bearer s3cret"));
    assert!(!format!("{http:?}").contains("s3cret"), "Debug hides the secret");
    assert_eq!(http.ca_file, Some(PathBuf::from("/etc/ca.pem")));
    assert_eq!(
        error("[Authentication]\ntype=http\n"),
        "/etc/remoteproxy.conf: [HttpAuthenticator] url: missing: set the URL the token is POSTed to"
    );

    assert_eq!(
        kind("[Authentication]\ntype=static\n[StaticAuthenticator]\nfile=/etc/tokens\n"),
        KindSettings::Static(StaticSettings {
            file: PathBuf::from("/etc/tokens"),
            reload_interval: Duration::from_secs(2)
        })
    );
    assert_eq!(
        kind(
            "[Authentication]\ntype=jwt\n[JwtAuthenticator]\njwks=/etc/jwks.json\naudience=broker\nleeway=5\n"
        ),
        KindSettings::Jwt(JwtSettings {
            jwks_file: PathBuf::from("/etc/jwks.json"),
            issuer: None,
            audience: Some("broker".into()),
            user_claim: "sub".into(),
            leeway: Duration::from_secs(5),
        })
    );
    assert!(
        error("[Authentication]\ntype=certificate\n")
            .contains("needs [SSL] enabled=true and clientCaCertificate")
    );
    assert_eq!(
        kind(
            "[Authentication]\ntype=certificate\n[SSL]\nclientCaCertificate=/etc/ca.pem\n\
             [CertificateAuthenticator]\nuserName=O\n"
        ),
        KindSettings::Certificate(CertificateSettings { user_name_from: SubjectField::Organization })
    );
}

#[test]
fn cache_throttle_and_request_timeout() {
    let settings = parse("[Authentication]\ntype=mock\n").unwrap().authentication.unwrap();
    assert_eq!(settings.cache_ttl, None);
    assert_eq!(
        settings.throttle,
        Some(ThrottleSettings { base: Duration::from_millis(250), max: Duration::from_millis(4000) })
    );
    assert_eq!(settings.request_timeout, Duration::from_millis(6000), "3/4 of authenticationTimeout");
    let settings =
        parse("[Authentication]\ntype=mock\ncacheTtl=30000\nthrottle=false\nrequestTimeout=1000\n")
            .unwrap()
            .authentication
            .unwrap();
    assert_eq!(settings.cache_ttl, Some(Duration::from_secs(30)));
    assert_eq!(settings.throttle, None);
    assert_eq!(settings.request_timeout, Duration::from_secs(1));
    assert!(error("[Authentication]\ntype=mock\nrequestTimeout=8000\n").contains("below"));
    assert!(error("[Authentication]\ntype=mock\nthrottleBaseDelay=5000\n").contains("throttleMaxDelay"));
}

#[test]
fn authorization_values_never_appear_in_messages() {
    let message = error("[HttpAuthenticator]\nauthorization=Bearer s3cret\nurl=x\nfoo=1\n");
    assert!(!message.contains("s3cret"), "{message}");
}

#[test]
fn unreadable_file() {
    let message = load_file(Path::new("/etc/x.conf")).unwrap_err().to_string();
    assert_eq!(
        message,
        "/etc/x.conf: cannot read the configuration file: No such file or directory (os error 2)"
    );
    let dir = fixture("tls");
    let message = load_file(&dir).unwrap_err().to_string();
    assert!(
        message.starts_with(&format!("{}: cannot read the configuration file: ", dir.display())),
        "{message}"
    );
}

#[test]
fn invalid_utf8_is_a_syntax_error() {
    let error = decode(b"[ProxyServer]\nname=\xff\n".to_vec(), Path::new(FILE)).unwrap_err();
    assert_eq!(error.to_string(), "/etc/remoteproxy.conf: line 2: the file is not valid UTF-8");
    assert_eq!(decode(b"\xef\xbb\xbf[SSL]".to_vec(), Path::new(FILE)).unwrap(), "[SSL]");
}

#[test]
fn values_in_messages() {
    assert_eq!(shown("port", "80"), "\"80\"");
    assert_eq!(shown("name", "a\"b\tc"), "\"a\\\"b\\tc\"");
    assert_eq!(shown("certificateKey", "/k.pem"), "\"/k.pem\"");
    for secret in ["token", "apiToken", "password", "clientSecret", "privateKey", "KEY"] {
        assert_eq!(shown(secret, "hunter2"), "(hidden value)", "{secret}");
    }
    let long = "x".repeat(100);
    assert_eq!(shown("name", &long), format!("\"{}\"...", "x".repeat(64)));
}

#[test]
fn bad_value_without_a_file() {
    assert_eq!(
        ConfigError::bad_value(None, "SSL", "certificate", "cannot generate").to_string(),
        "built-in defaults: [SSL] certificate: cannot generate"
    );
    assert_eq!(
        ConfigError::bad_value(Some(Path::new("/a.conf")), "SSL", "certificate", "x").to_string(),
        "/a.conf: [SSL] certificate: x"
    );
}

/// The declared defaults build, and are PROTOCOL §1 and §4's.
#[test]
fn defaults_build() {
    let config = Config::default();
    let loopback = |port| Some(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port));
    let runtime = crate::config::runtime_dir();
    assert_eq!(
        config.server,
        ServerSettings {
            name: "remoteproxy".to_string(),
            write_logs: false,
            log_file: PathBuf::from("/var/log/remoteproxy/remoteproxy.log"),
            log_level: "info".to_string(),
            log_engine_enabled: false,
            monitor_socket: Some(runtime.join("monitor.sock")),
            monitor_socket_mode: 0o660,
            monitor_socket_group: None,
            statistics_log_file: PathBuf::from("/var/log/remoteproxy/statistics.log"),
            statistics_state_file: PathBuf::from("/var/lib/remoteproxy/statistics.json"),
            max_message_size: 10240,
            max_connections: 65536,
            shutdown_grace_period: Duration::from_secs(30),
            max_clients_per_server: 1024,
            health_check_path: None,
        }
    );
    assert_eq!(
        config.timeouts,
        Timeouts {
            json_rpc: Duration::from_millis(10000),
            authentication: Duration::from_millis(8000),
            inactive: Duration::from_millis(8000),
            alone: Duration::from_millis(8000),
            tunnel_idle: None,
            handshake_deadline: Duration::from_millis(30000),
            tls_handshake: Duration::from_millis(5000),
            tunnel_proxy_server: Duration::from_millis(60000),
            keep_alive_interval: Some(Duration::from_millis(30000)),
            keep_alive_timeout: Duration::from_millis(10000),
        }
    );
    assert_eq!(
        config.tls,
        TlsSettings {
            enabled: true,
            certificate: None,
            certificate_key: None,
            certificate_chain: None,
            certificate_check_interval: Some(Duration::from_secs(10)),
            client_ca: None,
            client_certificate_required: false,
            session_resumption: true,
            ticket_key_rotation: Duration::from_secs(43200),
            ticket_key_file: Some(PathBuf::from("/var/lib/remoteproxy/ticket-keys")),
        }
    );
    assert_eq!(
        config.listeners,
        ListenerSettings {
            websocket: loopback(1212),
            tcp: loopback(1213),
            unix: Some(runtime.join("proxy.socket")),
            unix_mode: 0o660,
            unix_group: None,
        }
    );
    assert_eq!(
        config.tunnel_proxy_listeners,
        ListenerSettings {
            websocket: loopback(2212),
            tcp: loopback(2213),
            unix: None,
            unix_mode: 0o660,
            unix_group: None
        }
    );
    assert_eq!(config.metrics, MetricsSettings { enabled: false, address: loopback(9164).unwrap() });
    assert_eq!((config.authentication, config.authentication_implied, config.source), (None, false, None));
}

/// Every key with a default holds a value its own type accepts: a section of nothing but the
/// defaults, written out, builds to the defaults.
#[test]
fn written_defaults_read_back_as_the_defaults() {
    let mut text = String::new();
    for section in
        crate::config::schema::sections().filter(|s| !s.name.contains("Authenticat") && s.name != "AWS")
    {
        text.push_str(&format!("[{}]\n", section.name));
        for key in section.keys {
            if let Some(value) = key.default {
                let value = match value.strip_prefix("/run/remoteproxy/") {
                    Some(file) => crate::config::runtime_dir().join(file).display().to_string(),
                    None => value.to_string(),
                };
                text.push_str(&format!("{}={value}\n", key.name));
            }
        }
    }
    assert_eq!(parse(&text).unwrap(), Config::default());
}

#[test]
fn the_commented_file_lists_every_key_and_reads_as_the_defaults() {
    let text = crate::config::commented_file();
    assert_eq!(parse(&text).unwrap(), Config::default());
    for section in crate::config::schema::sections() {
        assert!(text.contains(&format!("[{}]\n", section.name)), "[{}]", section.name);
        for key in section.keys {
            let line = format!("#{}={}\n", key.name, key.default.unwrap_or(""));
            assert!(text.contains(&line), "[{}] {line}", section.name);
        }
    }
}

/// The README's configuration table names every declared key, so it cannot fall behind.
#[test]
fn the_readme_names_every_key() {
    let readme = include_str!("../../README.md");
    for section in crate::config::schema::sections() {
        assert!(readme.contains(&format!("`[{}]`", section.name)), "README lacks [{}]", section.name);
        for key in section.keys {
            assert!(
                readme.contains(&format!("`{}`", key.name)),
                "README lacks [{}] {}",
                section.name,
                key.name
            );
        }
    }
}

/// No section is declared twice, by the broker and the authenticators together, and no key twice
/// within its section.
#[test]
fn declared_names_are_unique() {
    let all: Vec<_> = crate::config::schema::sections().collect();
    for (index, section) in all.iter().enumerate() {
        assert!(all[..index].iter().all(|other| other.name != section.name), "[{}]", section.name);
        for (at, key) in section.keys.iter().enumerate() {
            assert!(
                section.keys[..at].iter().all(|other| other.name != key.name),
                "[{}] {}",
                section.name,
                key.name
            );
        }
    }
}

/// The package's configuration file names every key (set, or commented at its default) and reads
/// as the package means it.
#[test]
fn the_packaged_configuration_is_complete_and_reads() {
    let text = include_str!("../../packaging/remoteproxy.conf");
    for section in crate::config::schema::sections() {
        for key in section.keys {
            let commented = format!("#{}={}\n", key.name, key.default.unwrap_or(""));
            let set = format!("\n{}=", key.name);
            assert!(text.contains(&commented) || text.contains(&set), "[{}] {}", section.name, key.name);
        }
    }
    let config = parse(text).unwrap();
    assert_eq!(config.listeners.websocket, v4(0, 0, 0, 0, 443));
    assert_eq!(config.listeners.tcp, v4(0, 0, 0, 0, 80));
    assert_eq!(config.tls.certificate, Some(PathBuf::from("/etc/remoteproxy/tls/certificate.pem")));
    assert_eq!(config.authentication.unwrap().kind.name(), "static");
}

#[test]
fn log_levels_are_checked() {
    assert_eq!(parse("[ProxyServer]\nlogLevel=debug\n").unwrap().server.log_level, "debug");
    assert_eq!(
        parse("[ProxyServer]\nlogLevel=info,remoteproxy=trace\n").unwrap().server.log_level,
        "info,remoteproxy=trace"
    );
    assert_eq!(
        error("[ProxyServer]\nlogLevel=info,remoteproxy=loud\n"),
        "/etc/remoteproxy.conf: [ProxyServer] logLevel: \"info,remoteproxy=loud\" is not a log level or filter \
         (error, warn, info, debug, trace, or a filter like info,remoteproxy=debug)"
    );
}

#[test]
fn limits_and_the_health_path_read_and_refuse_bad_values() {
    let config = parse_str(
        "[ProxyServer]\nhealthCheckPath=/healthz\n[Limits]\nmaxConnectionsPerIp=20\n\
         maxNewConnectionsPerIpPerSecond=0\nipv6PrefixLength=56\nmaxPendingHandshakes=0\n",
        Path::new("t.conf"),
    )
    .unwrap();
    assert_eq!(config.server.health_check_path.as_deref(), Some("/healthz"));
    assert_eq!(
        config.limits,
        crate::config::LimitsSettings {
            max_connections_per_ip: Some(20),
            max_new_connections_per_ip_per_second: None,
            ipv6_prefix_length: 56,
            max_pending_handshakes: None,
            max_tunnels_per_token: None,
        }
    );
    let defaults = crate::config::Config::default();
    assert_eq!(defaults.limits.max_pending_handshakes, Some(8192));
    assert_eq!(defaults.limits.max_connections_per_ip, None);
    for (text, needle) in [
        ("[ProxyServer]\nhealthCheckPath=healthz\n", "healthCheckPath"),
        ("[Limits]\nipv6PrefixLength=129\n", "ipv6PrefixLength"),
        ("[Limits]\nmaxConnectionsPerIp=-1\n", "maxConnectionsPerIp"),
    ] {
        let message = parse_str(text, Path::new("t.conf")).unwrap_err().to_string();
        assert!(message.contains(needle) && !message.contains('\n'), "{message}");
    }
}

#[test]
fn cluster_settings_and_their_mistakes() {
    assert_eq!(parse("").unwrap().cluster, None);
    let secret = "secret=sixteen characters!";
    let config = parse(&format!(
        "[Cluster]\nenabled=true\nredisUrl=redis://10.0.0.5:6380/2\nnodeId=node-1\nrelayHost=10.0.0.1\nrelayPort=0\n{secret}\n"
    ))
    .unwrap();
    let cluster = config.cluster.unwrap();
    assert_eq!(cluster.redis_url.expose_secret(), "redis://10.0.0.5:6380/2");
    assert_eq!(cluster.node_id, "node-1");
    assert_eq!(cluster.relay_address, "10.0.0.1:0".parse().unwrap());
    assert_eq!(cluster.advertise_address, None);
    assert_eq!(cluster.secret.expose_secret(), "sixteen characters!");
    assert_eq!(cluster.heartbeat_interval, Duration::from_millis(1000));
    // Every address: the others must be told where to dial.
    let every = error(&format!("[Cluster]\nenabled=true\nnodeId=n\n{secret}\n"));
    assert!(every.contains("advertiseAddress: is required"), "{every}");
    let short = error("[Cluster]\nenabled=true\nnodeId=n\nrelayHost=127.0.0.1\nsecret=short\n");
    assert!(short.contains("at least 16 characters") && !short.contains("short\""), "{short}");
    let bad_id = error(&format!("[Cluster]\nenabled=true\nnodeId=a b\nrelayHost=127.0.0.1\n{secret}\n"));
    assert!(bad_id.contains("nodeId"), "{bad_id}");
    let bad_prefix =
        error(&format!("[Cluster]\nenabled=true\nredisKeyPrefix=rp*\nrelayHost=127.0.0.1\n{secret}\n"));
    assert!(bad_prefix.contains("redisKeyPrefix"), "{bad_prefix}");
    let bad_url =
        error(&format!("[Cluster]\nenabled=true\nredisUrl=http://x\nrelayHost=127.0.0.1\n{secret}\n"));
    assert!(bad_url.contains("redis://"), "{bad_url}");
    // The secret from a file, first line.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("secret");
    std::fs::write(&file, "from a file, long enough\nignored\n").unwrap();
    let config = parse(&format!(
        "[Cluster]\nenabled=true\nrelayHost=0.0.0.0\nadvertiseAddress=node1.internal:2214\nsecretFile={}\n",
        file.display()
    ))
    .unwrap();
    let cluster = config.cluster.unwrap();
    assert_eq!(cluster.secret.expose_secret(), "from a file, long enough");
    assert_eq!(cluster.advertise_address.as_deref(), Some("node1.internal:2214"));
    assert!(!cluster.node_id.is_empty(), "the host name stands in");
    assert!(!format!("{cluster:?}").contains("long enough"), "the secret never prints");
}

#[test]
fn redis_over_tls_reads_its_files_and_names_the_wrong_one() {
    let dir = tempfile::tempdir().unwrap();
    let pem = |name: &str, label: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, format!("-----BEGIN {label}-----\nAAAA\n-----END {label}-----\n")).unwrap();
        path.display().to_string()
    };
    let (ca, cert, key) =
        (pem("ca.pem", "CERTIFICATE"), pem("c.pem", "CERTIFICATE"), pem("k.pem", "PRIVATE KEY"));
    let base = "[Cluster]\nenabled=true\nrelayHost=127.0.0.1\nsecret=sixteen characters!\n";
    let config = parse(&format!(
        "{base}redisUrl=rediss://r.internal:6380\nredisCaCertificate={ca}\nredisCertificate={cert}\nredisCertificateKey={key}\n"
    ))
    .unwrap();
    let tls = config.cluster.unwrap().redis_tls.unwrap();
    assert!(tls.ca_certificate.as_ref().unwrap().starts_with(b"-----BEGIN CERTIFICATE"));
    let (_, client_key) = tls.client.clone().unwrap();
    assert!(client_key.expose_secret().contains("PRIVATE KEY"));
    assert!(!format!("{tls:?}").contains("AAAA"), "the key never prints");
    // rediss:// alone trusts the system's store.
    let plain = parse(&format!("{base}redisUrl=rediss://r.internal:6380\n")).unwrap();
    assert_eq!(plain.cluster.unwrap().redis_tls.map(|t| t.ca_certificate), Some(None));
    for (lines, needle) in [
        (
            format!("redisUrl=redis://r:6379\nredisCaCertificate={ca}"),
            "redisCaCertificate: is only used with a rediss://",
        ),
        (format!("redisUrl=rediss://r:6380\nredisCertificate={cert}"), "redisCertificateKey: is required"),
        (format!("redisUrl=rediss://r:6380\nredisCertificateKey={key}"), "redisCertificate: is required"),
        ("redisUrl=rediss://r:6380\nredisCaCertificate=/nonexistent.pem".to_string(), "cannot be read"),
        (
            format!("redisUrl=rediss://r:6380\nredisCaCertificate={}", dir.path().join("none").display()),
            "cannot be read",
        ),
    ] {
        let message = error(&format!("{base}{lines}\n"));
        assert!(message.contains(needle), "{needle}: {message}");
    }
    // A certificate where the key belongs (and the other way round) names the key that is wrong.
    let swapped = error(&format!(
        "{base}redisUrl=rediss://r:6380\nredisCertificate={key}\nredisCertificateKey={cert}\n"
    ));
    assert!(
        swapped.contains("redisCertificate: ") && swapped.contains("holds no PEM certificate"),
        "{swapped}"
    );
    let key_only = error(&format!(
        "{base}redisUrl=rediss://r:6380\nredisCertificate={cert}\nredisCertificateKey={cert}\n"
    ));
    assert!(
        key_only.contains("redisCertificateKey: ") && key_only.contains("holds no PEM private key"),
        "{key_only}"
    );
    std::fs::write(dir.path().join("empty.pem"), "not pem").unwrap();
    let message = error(&format!(
        "{base}redisUrl=rediss://r:6380\nredisCaCertificate={}\n",
        dir.path().join("empty.pem").display()
    ));
    assert!(message.contains("holds no PEM certificate"), "{message}");
}
