//! The monitor snapshot (PROTOCOL §7): the broker writes it, `remoteproxy-monitor` reads it, both
//! with these types. Every field has a default, so snapshots of brokers that send fewer fields
//! (1.x) parse too. The broker serializes through `serde_json::Value`, whose keys are sorted, as
//! the reference's Qt JSON writes them.

#![allow(missing_docs)] // the fields are PROTOCOL §7's, named as there

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One snapshot.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Snapshot {
    pub api_version: String,
    /// When the served TLS certificate expires, as Unix time (ours; absent with TLS off). Keys
    /// stay in the reference's alphabetical order.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub certificate_expiry: Option<i64>,
    /// WebSocket connections closed because they answered no keepalive ping (ours).
    pub keep_alive_timeouts: Option<u64>,
    pub server_name: String,
    pub server_version: String,
    /// Seconds since the broker started (not in 1.x snapshots).
    pub uptime: Option<u64>,
    pub proxy_statistic: ProxyStatistic,
    pub tunnel_proxy_statistic: TunnelProxyStatistic,
    /// The rendezvous listener's meetings (ours; absent without `[RendezvousServer]`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rendezvous_statistic: Option<RendezvousStatistic>,
    /// This node's place in its cluster (ours; absent without `[Cluster]`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster_statistic: Option<ClusterStatistic>,
}

/// Cluster mode (`[Cluster]`): this node, its registry and its relayed tunnels.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ClusterStatistic {
    /// This node's `nodeId`.
    pub node_id: String,
    /// `up` when Redis answered the last call, `down` otherwise.
    pub redis: String,
    /// The node is draining (it left the registry; its tunnels finish).
    pub draining: bool,
    /// Every live node (this one included), as the registry last listed them.
    pub nodes: Vec<ClusterNode>,
    /// Cross-node tunnels running now, by the other node's id.
    pub relayed_tunnels: BTreeMap<String, u64>,
    /// Cross-node tunnels since the start.
    pub relayed_total: u64,
}

/// A live cluster node.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ClusterNode {
    /// Its `nodeId`.
    pub id: String,
    /// Where its relay listens (what the other nodes dial).
    pub address: String,
}

/// The rendezvous listener (`[RendezvousServer]`): its meetings now and its refusals so far.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct RendezvousStatistic {
    /// Meetings with a peer waiting for its partner.
    pub waiting: u64,
    /// Meetings whose two peers are joined.
    pub joined: u64,
    /// Payload bytes relayed by meetings that ended.
    pub relayed: u64,
    /// Peers closed before joining, by reason (`full`, `noHello`, `notHello`, `held`).
    pub refused: BTreeMap<String, u64>,
    pub meetings: Vec<Meeting>,
}

/// One meeting: its id and who is in it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Meeting {
    pub id: String,
    /// Both peers are joined and their messages pass.
    pub joined: bool,
    /// Payload bytes relayed between them so far (both ways).
    pub bytes: u64,
    pub peers: Vec<MeetingPeer>,
}

/// A peer of a meeting.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct MeetingPeer {
    /// Its client certificate's O (or CN).
    pub subject: String,
    pub address: String,
}

/// The v1 proxy API.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ProxyStatistic {
    pub client_count: u64,
    pub tunnel_count: u64,
    /// The reference's spelling; `throughput` is preferred when present.
    pub troughput: u64,
    pub throughput: Option<u64>,
    pub total: Totals,
    pub clients: Vec<Client>,
    pub tunnels: Vec<Tunnel>,
}

/// Totals since the statistics began.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Totals {
    pub total_client_count: u64,
    pub total_traffic: u64,
    pub total_tunnel_count: u64,
}

/// A v1 connection.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Client {
    pub address: String,
    pub authenticated: bool,
    pub id: String,
    pub name: String,
    /// Bytes it sent into its tunnel.
    pub rx_data_count: u64,
    /// When it connected (unix seconds).
    pub timestamp: u64,
    pub tunnel_connected: bool,
    /// Bytes delivered to it.
    pub tx_data_count: u64,
    pub user_name: String,
    pub uuid: String,
}

/// A v1 tunnel between two clients (by their `id`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Tunnel {
    pub client_one: String,
    pub client_two: String,
    pub timestamp: u64,
}

/// The v2 TunnelProxy API.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct TunnelProxyStatistic {
    pub client_connections_count: u64,
    pub server_connections_count: u64,
    /// v2 connections open now.
    pub total_client_count: u64,
    pub troughput: u64,
    pub throughput: Option<u64>,
    /// v2 connections per transport (`TCP`, `WebSocket`, `unix`).
    pub transports: BTreeMap<String, u64>,
    pub tunnel_connections: Vec<Server>,
}

/// A registered TunnelProxy server and its clients.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Server {
    pub address: String,
    pub client_connections: Vec<ServerClient>,
    pub id: String,
    pub name: String,
    pub rx_data_count: u64,
    pub server_uuid: String,
    pub timestamp: u64,
    pub tx_data_count: u64,
}

/// A client of a TunnelProxy server.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ServerClient {
    pub address: String,
    pub client_uuid: String,
    pub id: String,
    pub name: String,
    pub rx_data_count: u64,
    pub timestamp: u64,
    pub tx_data_count: u64,
}

impl ProxyStatistic {
    /// Bytes per second over the broker's last second.
    pub fn throughput(&self) -> u64 {
        self.throughput.unwrap_or(self.troughput)
    }

    /// The client with this connection id.
    pub fn client(&self, id: &str) -> Option<&Client> {
        self.clients.iter().find(|c| c.id == id)
    }
}

impl TunnelProxyStatistic {
    /// Bytes per second over the broker's last second.
    pub fn throughput(&self) -> u64 {
        self.throughput.unwrap_or(self.troughput)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_protocol_example_and_tolerates_missing_fields() {
        let text = r#"{"apiVersion":"0.5","serverName":"n","serverVersion":"1.0",
            "proxyStatistic":{"clientCount":2,"tunnelCount":1,"troughput":1000,
              "total":{"totalClientCount":70,"totalTraffic":2238,"totalTunnelCount":9},
              "clients":[{"address":"127.0.0.1","authenticated":true,"id":"{a}","name":"a",
                "rxDataCount":1000,"timestamp":1795404327,"tunnelConnected":true,"txDataCount":0,
                "userName":"u","uuid":"x"}],
              "tunnels":[{"clientOne":"{a}","clientTwo":"{b}","timestamp":1795404327}]},
            "tunnelProxyStatistic":{"clientConnectionsCount":0,"serverConnectionsCount":0,
              "totalClientCount":0,"troughput":5,"transports":{"TCP":1,"WebSocket":0,"unix":0},
              "tunnelConnections":[{"name":"s","clientConnections":[{"name":"c"}]}]}}"#;
        let s: Snapshot = serde_json::from_str(text).unwrap();
        assert_eq!(s.uptime, None);
        assert_eq!(s.proxy_statistic.throughput(), 1000);
        assert_eq!(s.proxy_statistic.total.total_traffic, 2238);
        assert_eq!(s.proxy_statistic.client("{a}").unwrap().user_name, "u");
        assert_eq!(s.proxy_statistic.tunnels[0].client_two, "{b}");
        assert_eq!(s.tunnel_proxy_statistic.throughput(), 5);
        assert_eq!(s.tunnel_proxy_statistic.transports["TCP"], 1);
        assert_eq!(s.tunnel_proxy_statistic.tunnel_connections[0].client_connections[0].name, "c");

        let s: Snapshot = serde_json::from_str(r#"{"uptime":5,"proxyStatistic":{"throughput":7}}"#).unwrap();
        assert_eq!((s.uptime, s.proxy_statistic.throughput()), (Some(5), 7));
        assert!(serde_json::from_str::<Snapshot>("\"text\"").is_err());
    }
}
