use std::net::{IpAddr, SocketAddr};

use ppp::v2::{Addresses, Builder, Command, Protocol, Type, Version};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::*;

fn v2(command: Command, addresses: Addresses, tlv: bool) -> Vec<u8> {
    let builder = Builder::with_addresses(Version::Two | command, Protocol::Stream, addresses);
    let builder = if tlv { builder.write_tlv(Type::UniqueId, b"lb-connection-7").unwrap() } else { builder };
    builder.build().unwrap()
}

/// Reads the header from `bytes` and returns it with what was left unread.
async fn read_all(bytes: &[u8]) -> (Result<Option<SocketAddr>, HeaderError>, Vec<u8>) {
    let mut reader = bytes;
    let result = read_header(&mut reader).await;
    let mut rest = Vec::new();
    reader.read_to_end(&mut rest).await.unwrap();
    (result, rest)
}

#[tokio::test]
async fn a_v1_header_gives_the_client_and_leaves_what_follows() {
    let (result, rest) = read_all(b"PROXY TCP4 198.51.100.7 192.0.2.1 51234 443\r\n\x16\x03\x01rest").await;
    assert_eq!(result, Ok(Some("198.51.100.7:51234".parse().unwrap())));
    assert_eq!(rest, b"\x16\x03\x01rest");

    let (result, rest) = read_all(b"PROXY TCP6 2001:db8::7 2001:db8::1 4000 443\r\nGET /").await;
    assert_eq!(result, Ok(Some("[2001:db8::7]:4000".parse().unwrap())));
    assert_eq!(rest, b"GET /");

    let (result, rest) = read_all(b"PROXY UNKNOWN\r\nGET /").await;
    assert_eq!(result, Ok(None));
    assert_eq!(rest, b"GET /");
}

#[tokio::test]
async fn a_v2_header_gives_the_client_and_leaves_what_follows() {
    let from: SocketAddr = "[2001:db8::9]:61000".parse().unwrap();
    let to: SocketAddr = "[2001:db8::1]:443".parse().unwrap();
    let mut bytes = v2(Command::Proxy, (from, to).into(), true);
    bytes.extend_from_slice(b"\x16\x03\x01hello");
    let (result, rest) = read_all(&bytes).await;
    assert_eq!(result, Ok(Some(from)));
    assert_eq!(rest, b"\x16\x03\x01hello");

    let from: SocketAddr = "203.0.113.5:1234".parse().unwrap();
    let to: SocketAddr = "192.0.2.1:443".parse().unwrap();
    let (result, rest) = read_all(&v2(Command::Proxy, (from, to).into(), false)).await;
    assert_eq!((result, rest.len()), (Ok(Some(from)), 0));

    // A balancer's own health check: LOCAL, the connection's address stands.
    let (result, _) = read_all(&v2(Command::Local, Addresses::Unspecified, false)).await;
    assert_eq!(result, Ok(None));
}

#[tokio::test]
async fn anything_else_is_refused_with_its_reason() {
    let hello = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 and the rest of a ClientHello";
    assert_eq!(read_all(hello).await.0, Err(HeaderError::Missing));
    assert_eq!(read_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await.0, Err(HeaderError::Missing));
    assert_eq!(read_all(b"PROXY TCP4 not-an-address 192.0.2.1 1 2\r\n").await.0, Err(HeaderError::Malformed));
    assert_eq!(read_all(b"PROXY TCP4 1.2.3.4").await.0, Err(HeaderError::Closed));
    let long = format!("PROXY TCP4 {}\r\n", "1".repeat(200));
    assert_eq!(read_all(long.as_bytes()).await.0, Err(HeaderError::TooLong));
    // A v2 header whose length does not fit its address family.
    let mut bad = v2(Command::Proxy, Addresses::Unspecified, false);
    bad[13] = 0x11; // TCP over IPv4, but no addresses follow
    assert_eq!(read_all(&bad).await.0, Err(HeaderError::Malformed));
}

#[test]
fn step_never_asks_past_a_v1_line_or_a_v2_length() {
    let line = b"PROXY TCP4 198.51.100.7 192.0.2.1 51234 443\r\n";
    let mut buf = Vec::new();
    while let Step::Read(n) = step(&buf) {
        buf.extend_from_slice(&line[buf.len()..buf.len() + n]);
    }
    assert_eq!(buf, line);
}

#[test]
fn trusted_takes_addresses_and_prefixes_of_both_families() {
    let trusted = Trusted::parse("10.0.0.0/8, 192.0.2.7 2001:db8::/32,").unwrap();
    let yes = ["10.1.2.3", "192.0.2.7", "2001:db8:1::5", "::ffff:10.9.9.9"];
    let no = ["11.0.0.1", "192.0.2.8", "2001:db9::1", "::1"];
    for ip in yes {
        assert!(trusted.contains(ip.parse::<IpAddr>().unwrap()), "{ip}");
    }
    for ip in no {
        assert!(!trusted.contains(ip.parse::<IpAddr>().unwrap()), "{ip}");
    }
    assert_eq!(Trusted::parse("10.0.0.0/8, lb.example.com"), Err("lb.example.com".to_string()));
    assert!(Trusted::parse(" , ").unwrap().is_empty());
}

#[tokio::test]
async fn an_untrusted_header_is_told_from_tls_and_http_by_peeking() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let cases: [(&[u8], bool); 5] = [
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n", true),
        (b"\r\n\r\n\0\r\nQUIT\n", true),
        (b"\x16\x03\x01", false),
        (b"POST / HTTP/1.1\r\n", false),
        (b"PUT / HTTP/1.1\r\n", false),
    ];
    for (first, expected) in cases {
        let mut client = TcpStream::connect(address).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        client.write_all(first).await.unwrap();
        assert_eq!(starts_like_header(&server).await.unwrap(), expected, "{first:?}");
        // Peeking took nothing: the bytes are all still there.
        let mut got = vec![0; first.len()];
        let mut server = server;
        server.read_exact(&mut got).await.unwrap();
        assert_eq!(got, first);
    }
}
