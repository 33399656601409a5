//! The accept limits, with the clock given by the tests.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use remoteproxy_authenticators::PeerAddress;

use super::{Admission, SourceKey};
use crate::config::LimitsSettings;
use crate::stats::{Refusal, Stats};

fn admission(max_connections: usize, limits: LimitsSettings) -> Arc<Admission> {
    Arc::new(Admission::new(max_connections, &limits, Stats::new("test", Vec::new())))
}

fn limits() -> LimitsSettings {
    LimitsSettings {
        max_connections_per_ip: None,
        max_new_connections_per_ip_per_second: None,
        ipv6_prefix_length: 64,
        max_pending_handshakes: None,
        max_tunnels_per_token: None,
    }
}

fn peer(ip: &str) -> PeerAddress {
    PeerAddress::Ip(SocketAddr::new(ip.parse().unwrap(), 40000))
}

fn key(admission: &Admission, ip: &str) -> SourceKey {
    admission.key(ip.parse::<IpAddr>().unwrap())
}

#[test]
fn max_connections_counts_every_connection_until_its_ticket_goes() {
    let admission = admission(2, limits());
    let a = admission.admit(&peer("10.0.0.1")).unwrap();
    let _b = admission.admit(&peer("10.0.0.2")).unwrap();
    assert!(admission.admit(&peer("10.0.0.3")).is_none());
    drop(a);
    assert!(admission.admit(&peer("10.0.0.3")).is_some());
}

#[test]
fn one_source_is_limited_and_another_is_still_served() {
    let admission = admission(100, LimitsSettings { max_connections_per_ip: Some(2), ..limits() });
    let first = admission.admit(&peer("192.0.2.1")).unwrap();
    let _second = admission.admit(&peer("192.0.2.1")).unwrap();
    assert!(admission.admit(&peer("192.0.2.1")).is_none(), "a third from the same address");
    assert!(admission.admit(&peer("192.0.2.2")).is_some(), "another address is served");
    drop(first);
    assert!(admission.admit(&peer("192.0.2.1")).is_some(), "a place came free");
}

#[test]
fn sources_without_connections_are_forgotten_when_no_rate_is_kept() {
    let admission = admission(100, LimitsSettings { max_connections_per_ip: Some(5), ..limits() });
    let tickets: Vec<_> = (0..50).map(|i| admission.admit(&peer(&format!("10.1.0.{i}"))).unwrap()).collect();
    assert_eq!(admission.tracked(), 50);
    drop(tickets);
    assert_eq!(admission.tracked(), 0);
}

#[test]
fn the_rate_is_a_bucket_that_closing_does_not_refill() {
    let admission =
        admission(100, LimitsSettings { max_new_connections_per_ip_per_second: Some(5), ..limits() });
    let source = key(&admission, "198.51.100.7");
    let start = Instant::now();
    for _ in 0..5 {
        admission.arrived(source, start).unwrap();
        admission.left_at(source, start);
    }
    // A second's worth came at once; closing them gave nothing back.
    assert_eq!(admission.arrived(source, start), Err(Refusal::MaxNewConnectionsPerIpPerSecond));
    // 200 ms later one more token has come.
    let later = start + Duration::from_millis(200);
    admission.arrived(source, later).unwrap();
    assert_eq!(admission.arrived(source, later), Err(Refusal::MaxNewConnectionsPerIpPerSecond));
    admission.left_at(source, later);
    // Once its bucket is full again and it has no connection, the source is forgotten, found by
    // the expiry queue on a later arrival of anyone.
    let much_later = later + Duration::from_secs(3);
    admission.arrived(key(&admission, "198.51.100.8"), much_later).unwrap();
    assert_eq!(admission.tracked(), 1, "only the new source is left");
}

#[test]
fn refused_attempts_keep_a_source_until_its_bucket_is_full() {
    let admission =
        admission(100, LimitsSettings { max_new_connections_per_ip_per_second: Some(1), ..limits() });
    let source = key(&admission, "203.0.113.9");
    let start = Instant::now();
    admission.arrived(source, start).unwrap();
    admission.left_at(source, start);
    // Refused again and again: each attempt must not let the entry (and its empty bucket) go.
    for ms in [100, 500, 900] {
        let now = start + Duration::from_millis(ms);
        assert_eq!(admission.arrived(source, now), Err(Refusal::MaxNewConnectionsPerIpPerSecond));
    }
    let expired = start + Duration::from_millis(1100);
    admission.arrived(key(&admission, "203.0.113.10"), expired).unwrap();
    assert_eq!(admission.tracked(), 2, "the refused source's bucket is not full yet");
    // A second after its last refusal the bucket is full again: the source is forgotten, and
    // only the two newer sources (one still connected, one just arrived) are left.
    let full = start + Duration::from_millis(2000);
    admission.arrived(key(&admission, "203.0.113.11"), full).unwrap();
    assert_eq!(admission.tracked(), 2, "the refused source is forgotten once its bucket is full");
}

#[test]
fn ipv6_sources_are_prefixes_and_mapped_ipv4_is_ipv4() {
    let admission = admission(100, LimitsSettings { max_connections_per_ip: Some(1), ..limits() });
    assert_eq!(key(&admission, "2001:db8:1:2::1"), key(&admission, "2001:db8:1:2:ffff::9"));
    assert_ne!(key(&admission, "2001:db8:1:2::1"), key(&admission, "2001:db8:1:3::1"));
    assert_eq!(key(&admission, "192.0.2.1"), key(&admission, "::ffff:192.0.2.1"));
    let _held = admission.admit(&peer("2001:db8:1:2::1")).unwrap();
    assert!(admission.admit(&peer("2001:db8:1:2::abcd")).is_none(), "same /64");
    assert!(admission.admit(&peer("2001:db8:1:3::1")).is_some(), "another /64");
}

#[test]
fn pending_handshakes_are_freed_by_authentication() {
    let admission = admission(100, LimitsSettings { max_pending_handshakes: Some(2), ..limits() });
    let mut first = admission.admit(&peer("10.0.0.1")).unwrap();
    let _second = admission.admit(&peer("10.0.0.2")).unwrap();
    assert!(admission.admit(&peer("10.0.0.3")).is_none(), "two are pending");
    first.authenticated();
    let _third = admission.admit(&peer("10.0.0.3")).expect("authentication freed a place");
    assert!(admission.admit(&peer("10.0.0.4")).is_none());
    drop(first);
    assert!(
        admission.admit(&peer("10.0.0.4")).is_none(),
        "an authenticated connection held no pending place"
    );
}

#[test]
fn unix_peers_are_not_counted_per_source() {
    let admission = admission(100, LimitsSettings { max_connections_per_ip: Some(1), ..limits() });
    let _a = admission.admit(&PeerAddress::Unix).unwrap();
    let _b = admission.admit(&PeerAddress::Unix).unwrap();
    assert_eq!(admission.tracked(), 0);
}

#[test]
fn a_flood_of_refusals_is_one_log_line_per_period() {
    let log = super::RefusalLog::default();
    for _ in 0..100 {
        log.refused(Refusal::MaxConnectionsPerIp, &peer("10.9.9.9"));
    }
    // One line was written; the other 99 wait to be reported as "more" on the next one.
    assert_eq!(log.skipped.load(std::sync::atomic::Ordering::Relaxed), 99);
}
