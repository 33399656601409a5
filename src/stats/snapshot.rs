//! The monitor snapshot (PROTOCOL §7): the reference's shape, plus `throughput` spelled right
//! next to its `troughput`, and `uptime`.
//!
//! Connection ids are printed as braced uuids, the form the reference's tools expect; the
//! number is the broker's connection id. Addresses are IPs without ports (empty for unix).

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::{SystemTime, UNIX_EPOCH};

use remoteproxy_authenticators::PeerAddress;
use remoteproxy_wire::Transport;
use remoteproxy_wire::monitor::{
    Client, ProxyStatistic, Server, ServerClient, Snapshot, Totals, Tunnel, TunnelProxyStatistic,
};
use serde_json::Value;

use super::{Api, ConnStats, Role, Stats};
use crate::protocol::remote_proxy::API_VERSION;

/// A connection id in the braced-uuid form of the reference's snapshot.
pub fn braced_id(id: u64) -> String {
    format!("{{00000000-0000-0000-0000-{id:012x}}}")
}

fn seconds(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default()
}

fn address(peer: PeerAddress) -> String {
    match peer {
        PeerAddress::Ip(addr) => addr.ip().to_string(),
        PeerAddress::Unix => String::new(),
    }
}

/// The snapshot; `print_all` also lists TunnelProxy servers without clients. Built with the
/// wire crate's types (the monitor reads with the same ones) and returned as a `Value`, whose
/// keys are sorted as the reference writes them.
pub fn snapshot(stats: &Stats, print_all: bool) -> Value {
    let connections = stats.connections();
    let tunnels = stats.live_tunnels();
    let totals = stats.totals();
    let (throughput, tunnel_proxy_throughput) = stats.throughput();
    let count = |n: usize| n as u64;

    let v1: Vec<&ConnStats> = connections.iter().map(|c| c.as_ref()).filter(|c| c.api == Api::V1).collect();
    let clients: Vec<Client> = v1
        .iter()
        .map(|c| {
            let info = c.info();
            Client {
                address: address(c.peer),
                authenticated: info.authenticated,
                id: braced_id(c.id),
                name: info.name,
                rx_data_count: c.rx.load(Ordering::Relaxed),
                timestamp: seconds(c.created),
                tunnel_connected: info.tunnel_connected,
                tx_data_count: c.tx.load(Ordering::Relaxed),
                user_name: info.user_name.unwrap_or_default(),
                uuid: info.uuid,
            }
        })
        .collect();
    let tunnel_list: Vec<Tunnel> = tunnels
        .iter()
        .map(|t| Tunnel {
            client_one: braced_id(t.one),
            client_two: braced_id(t.two),
            timestamp: seconds(t.created),
        })
        .collect();

    let v2: Vec<&ConnStats> = connections.iter().map(|c| c.as_ref()).filter(|c| c.api == Api::V2).collect();
    let roles: Vec<(&ConnStats, super::ConnInfo)> = v2.iter().map(|c| (*c, c.info())).collect();
    let mut transports: BTreeMap<String, u64> =
        Transport::ALL.into_iter().map(|kind| (kind.as_str().to_string(), 0)).collect();
    for (conn, _) in &roles {
        *transports.entry(conn.transport.as_str().to_string()).or_default() += 1;
    }
    let servers: Vec<&(&ConnStats, super::ConnInfo)> =
        roles.iter().filter(|(_, i)| i.role == Role::Server).collect();
    let client_count = roles.iter().filter(|(_, i)| matches!(i.role, Role::Client { .. })).count();
    let tunnel_connections: Vec<Server> = servers
        .iter()
        .filter_map(|(server, info)| {
            let clients: Vec<ServerClient> = roles
                .iter()
                .filter(|(_, i)| i.role == Role::Client { server: server.id })
                .map(|(c, i)| ServerClient {
                    address: address(c.peer),
                    client_uuid: i.uuid.clone(),
                    id: braced_id(c.id),
                    name: i.name.clone(),
                    rx_data_count: c.rx.load(Ordering::Relaxed),
                    timestamp: seconds(c.created),
                    tx_data_count: c.tx.load(Ordering::Relaxed),
                })
                .collect();
            (print_all || !clients.is_empty()).then(|| Server {
                address: address(server.peer),
                client_connections: clients,
                id: braced_id(server.id),
                name: info.name.clone(),
                rx_data_count: server.rx.load(Ordering::Relaxed),
                server_uuid: info.uuid.clone(),
                timestamp: seconds(server.created),
                tx_data_count: server.tx.load(Ordering::Relaxed),
            })
        })
        .collect();

    let snapshot = Snapshot {
        api_version: API_VERSION.to_string(),
        certificate_expiry: stats.certificate_expiry(),
        keep_alive_timeouts: Some(stats.keepalive_timeouts()),
        server_name: stats.server_name().to_string(),
        server_version: env!("CARGO_PKG_VERSION").to_string(),
        uptime: Some(stats.uptime().as_secs()),
        proxy_statistic: ProxyStatistic {
            client_count: count(v1.len()),
            tunnel_count: count(tunnels.len()),
            troughput: throughput,
            throughput: Some(throughput),
            total: Totals {
                total_client_count: totals.clients,
                total_traffic: totals.traffic,
                total_tunnel_count: totals.tunnels,
            },
            clients,
            tunnels: tunnel_list,
        },
        rendezvous_statistic: stats.rendezvous(),
        cluster_statistic: stats.cluster(),
        tunnel_proxy_statistic: TunnelProxyStatistic {
            client_connections_count: count(client_count),
            server_connections_count: count(servers.len()),
            // The reference counts the v2 connections open now under this name.
            total_client_count: count(v2.len()),
            troughput: tunnel_proxy_throughput,
            throughput: Some(tunnel_proxy_throughput),
            transports,
            tunnel_connections,
        },
    };
    serde_json::to_value(snapshot).expect("the snapshot types serialize")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_are_sorted_as_the_reference_writes_them() {
        let stats = Stats::new("n", Vec::new());
        let text = serde_json::to_string(&snapshot(&stats, true)).unwrap();
        let keys =
            ["apiVersion", "proxyStatistic", "serverName", "serverVersion", "tunnelProxyStatistic", "uptime"];
        let at: Vec<usize> = keys.iter().map(|k| text.find(&format!("\"{k}\"")).unwrap()).collect();
        assert!(at.windows(2).all(|w| w[0] < w[1]), "{text}");
    }
    use remoteproxy_authenticators::Transport;
    use std::net::SocketAddr;

    #[test]
    fn empty_broker_has_the_reference_shape() {
        let stats = Stats::new("name", Vec::new());
        let v = snapshot(&stats, false);
        assert_eq!(v["apiVersion"], "0.5");
        assert_eq!(v["serverName"], "name");
        assert_eq!(v["proxyStatistic"]["clients"], json!([]));
        assert_eq!(v["proxyStatistic"]["total"]["totalTunnelCount"], 0);
        assert_eq!(v["tunnelProxyStatistic"]["transports"], json!({"TCP": 0, "WebSocket": 0, "unix": 0}));
    }

    #[test]
    fn connections_tunnels_and_servers_appear() {
        let stats = Stats::new("n", Vec::new());
        let peer = PeerAddress::Ip("192.0.2.7:5555".parse::<SocketAddr>().unwrap());
        let a = stats.open(1, Api::V1, peer, Transport::Tcp);
        let b = stats.open(2, Api::V1, PeerAddress::Unix, Transport::Unix);
        a.entry().update(|i| {
            i.name = "a".into();
            i.authenticated = true;
        });
        let tunnel = stats.tunnel_opened(&a, &b);
        a.sent(10);
        b.received(10);
        let server = stats.open(3, Api::V2, peer, Transport::WebSocket);
        server.entry().update(|i| i.role = Role::Server);
        let idle = stats.open(4, Api::V2, peer, Transport::Tcp);
        idle.entry().update(|i| i.role = Role::Server);
        let client = stats.open(5, Api::V2, peer, Transport::Tcp);
        client.entry().update(|i| i.role = Role::Client { server: 3 });

        let v = snapshot(&stats, false);
        let p = &v["proxyStatistic"];
        assert_eq!(p["clientCount"], 2);
        assert_eq!(p["tunnelCount"], 1);
        assert_eq!(p["clients"][0]["address"], "192.0.2.7");
        assert_eq!(p["clients"][0]["id"], "{00000000-0000-0000-0000-000000000001}");
        assert_eq!(p["clients"][0]["rxDataCount"], 10);
        assert_eq!(p["clients"][0]["tunnelConnected"], true);
        assert_eq!(p["clients"][1]["txDataCount"], 10);
        assert_eq!(p["total"]["totalTraffic"], 10);
        let t = &v["tunnelProxyStatistic"];
        assert_eq!(t["serverConnectionsCount"], 2);
        assert_eq!(t["clientConnectionsCount"], 1);
        assert_eq!(t["transports"], json!({"TCP": 2, "WebSocket": 1, "unix": 0}));
        assert_eq!(t["tunnelConnections"].as_array().unwrap().len(), 1, "idle servers only with printAll");
        assert_eq!(
            snapshot(&stats, true)["tunnelProxyStatistic"]["tunnelConnections"].as_array().unwrap().len(),
            2
        );

        drop(tunnel);
        drop((a, b, server, idle, client));
        let v = snapshot(&stats, true);
        assert_eq!(v["proxyStatistic"]["clientCount"], 0);
        assert_eq!(v["proxyStatistic"]["tunnelCount"], 0);
        assert_eq!(v["proxyStatistic"]["total"]["totalClientCount"], 2);
    }
}
