//! The rows of each tab, built from a snapshot: the text of each cell and what it sorts by.

use std::cmp::Ordering;

use crate::app::Sort;
use crate::format;
use crate::snapshot::Snapshot;

/// A sort key of one cell.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Key {
    Num(u64),
    Text(String),
}

/// One table row: the text of each cell and what it sorts by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub cells: Vec<String>,
    keys: Vec<Key>,
    /// A client row under its TunnelProxy server.
    pub child: bool,
}

impl Row {
    fn new(cells: Vec<(String, Key)>, child: bool) -> Row {
        let (cells, keys) = cells.into_iter().unzip();
        Row { cells, keys, child }
    }
}

fn compare(a: &Row, b: &Row, sort: Sort) -> Ordering {
    let order = a.keys[sort.column].cmp(&b.keys[sort.column]);
    if sort.descending { order.reverse() } else { order }
}

pub fn sorted(mut rows: Vec<Row>, sort: Sort) -> Vec<Row> {
    rows.sort_by(|a, b| compare(a, b, sort));
    rows
}

fn text(value: &str) -> (String, Key) {
    (value.to_string(), Key::Text(value.to_lowercase()))
}

fn bytes(n: u64) -> (String, Key) {
    (format::bytes(n), Key::Num(n))
}

/// Time since `timestamp`; sorts by that duration (the shortest first when ascending).
fn age(now: u64, timestamp: u64) -> (String, Key) {
    (format::age(now, timestamp), Key::Num(u64::MAX - timestamp))
}

pub fn client_rows(s: &Snapshot, now: u64) -> Vec<Row> {
    let p = &s.proxy_statistic;
    p.clients
        .iter()
        .map(|c| {
            let state = match (c.tunnel_connected, c.authenticated) {
                (true, _) => "tunnel",
                (false, true) => "waiting",
                (false, false) => "connecting",
            };
            Row::new(
                vec![
                    text(&c.name),
                    text(&c.address),
                    text(&c.user_name),
                    text(state),
                    age(now, c.timestamp),
                    bytes(c.rx_data_count),
                    bytes(c.tx_data_count),
                    text(&c.uuid),
                ],
                false,
            )
        })
        .collect()
}

pub fn tunnel_rows(s: &Snapshot, now: u64) -> Vec<Row> {
    let p = &s.proxy_statistic;
    p.tunnels
        .iter()
        .map(|t| {
            let one = p.client(&t.client_one);
            let two = p.client(&t.client_two);
            let name = |c: Option<&crate::snapshot::Client>, id: &str| match c {
                Some(c) if c.address.is_empty() => c.name.clone(),
                Some(c) => format!("{} ({})", c.name, c.address),
                None => id.to_string(),
            };
            let user = one.or(two).map(|c| c.user_name.as_str()).unwrap_or_default();
            let sent = |c: Option<&crate::snapshot::Client>| c.map(|c| c.rx_data_count).unwrap_or(0);
            Row::new(
                vec![
                    text(&name(one, &t.client_one)),
                    text(&name(two, &t.client_two)),
                    text(user),
                    age(now, t.timestamp),
                    bytes(sent(one)),
                    bytes(sent(two)),
                ],
                false,
            )
        })
        .collect()
}

/// Servers sorted, each followed by its clients sorted by the same column.
pub fn server_rows(s: &Snapshot, now: u64, sort: Sort) -> Vec<Row> {
    let mut servers: Vec<(Row, Vec<Row>)> = s
        .tunnel_proxy_statistic
        .tunnel_connections
        .iter()
        .map(|server| {
            let clients = server
                .client_connections
                .iter()
                .map(|c| {
                    let (_, name_key) = text(&c.name);
                    Row::new(
                        vec![
                            (format!("└ {}", c.name), name_key),
                            text(&c.address),
                            (String::new(), Key::Num(0)),
                            age(now, c.timestamp),
                            bytes(c.rx_data_count),
                            bytes(c.tx_data_count),
                            text(&c.client_uuid),
                        ],
                        true,
                    )
                })
                .collect();
            let count = server.client_connections.len() as u64;
            let row = Row::new(
                vec![
                    text(&server.name),
                    text(&server.address),
                    (count.to_string(), Key::Num(count)),
                    age(now, server.timestamp),
                    bytes(server.rx_data_count),
                    bytes(server.tx_data_count),
                    text(&server.server_uuid),
                ],
                false,
            );
            (row, sorted(clients, sort))
        })
        .collect();
    servers.sort_by(|(a, _), (b, _)| compare(a, b, sort));
    servers.into_iter().flat_map(|(server, clients)| std::iter::once(server).chain(clients)).collect()
}

/// The cluster's live nodes, this one marked, with the cross-node tunnels running to each. A
/// node that has relayed tunnels here but is no longer listed (it stopped beating) shows as gone.
pub fn node_rows(s: &Snapshot) -> Vec<Row> {
    let Some(c) = &s.cluster_statistic else { return Vec::new() };
    let relayed = |id: &str| c.relayed_tunnels.get(id).copied().unwrap_or(0);
    let row = |id: &str, address: &str, state: &str| {
        let tunnels = relayed(id);
        Row::new(vec![text(id), text(address), (tunnels.to_string(), Key::Num(tunnels)), text(state)], false)
    };
    let listed = c.nodes.iter().map(|node| {
        let state = match (node.id == c.node_id, c.draining) {
            (true, true) => "this node, draining",
            (true, false) => "this node",
            (false, _) => "live",
        };
        row(&node.id, &node.address, state)
    });
    let gone = c
        .relayed_tunnels
        .keys()
        .filter(|id| !c.nodes.iter().any(|node| &node.id == *id))
        .map(|id| row(id, "", "gone"));
    listed.chain(gone).collect()
}

/// The rendezvous listener's meetings: who is in each, and what passed between them.
pub fn meeting_rows(s: &Snapshot) -> Vec<Row> {
    let Some(r) = &s.rendezvous_statistic else { return Vec::new() };
    r.meetings
        .iter()
        .map(|m| {
            let peer = |i: usize| match m.peers.get(i) {
                Some(p) if p.address.is_empty() => p.subject.clone(),
                Some(p) => format!("{} ({})", p.subject, p.address),
                None => String::new(),
            };
            Row::new(
                vec![
                    text(&m.id),
                    text(if m.joined { "joined" } else { "waiting" }),
                    bytes(m.bytes),
                    text(&peer(0)),
                    text(&peer(1)),
                ],
                false,
            )
        })
        .collect()
}
