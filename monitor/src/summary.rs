//! The text of the header and the one-shot summary of `-n`.

use crate::app::{App, Tab};
use crate::format::{bytes, count, duration, rate};
use crate::snapshot::Snapshot;

/// When the served certificate expires, from the snapshot's Unix time.
fn certificate(expiry: i64) -> String {
    let now =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
    match u64::try_from(expiry - now) {
        Ok(left) => format!(" · certificate expires in {}", duration(left)),
        Err(_) => " · certificate EXPIRED".to_string(),
    }
}

/// The node's place in its cluster, when it is in one: its id, Redis, the live nodes, the tunnels
/// relayed to other nodes now.
fn cluster(s: &Snapshot) -> String {
    let Some(c) = &s.cluster_statistic else { return String::new() };
    let redis = if c.redis == "up" { "Redis up" } else { "Redis DOWN" };
    let draining = if c.draining { " · DRAINING" } else { "" };
    let relayed: u64 = c.relayed_tunnels.values().sum();
    format!(
        " · cluster node {} ({redis}, {}, {} relayed){draining}",
        c.node_id,
        count(c.nodes.len() as u64, "node", "nodes"),
        count(relayed, "tunnel", "tunnels")
    )
}

/// Four lines: the broker, the proxy API, the TunnelProxy API, the proxy's totals.
pub fn header(s: &Snapshot) -> [String; 4] {
    let p = &s.proxy_statistic;
    let t = &s.tunnel_proxy_statistic;
    let uptime = s.uptime.map(|u| format!(" · up {}", duration(u))).unwrap_or_default();
    let certificate = s.certificate_expiry.map(certificate).unwrap_or_default();
    let mut transports: String = t.transports.iter().map(|(name, n)| format!(" · {name} {n}")).collect();
    transports.insert_str(0, &rate(t.throughput()));
    [
        format!(
            "Broker {} · version {} · API {}{uptime}{certificate}{}",
            s.server_name,
            s.server_version,
            s.api_version,
            cluster(s)
        ),
        format!(
            "Proxy        {} · {} · {}",
            count(p.client_count, "client", "clients"),
            count(p.tunnel_count, "tunnel", "tunnels"),
            rate(p.throughput()),
        ),
        format!(
            "TunnelProxy  {} · {} · {transports}",
            count(t.server_connections_count, "server", "servers"),
            count(t.client_connections_count, "client", "clients"),
        ),
        format!(
            "Totals       {} · {} · {} relayed",
            count(p.total.total_client_count, "client", "clients"),
            count(p.total.total_tunnel_count, "tunnel", "tunnels"),
            bytes(p.total.total_traffic),
        ),
    ]
}

/// The header and every tab as aligned text.
pub fn render(app: &App) -> String {
    let Some(snapshot) = &app.snapshot else { return String::new() };
    let mut out = header(snapshot).join("\n");
    out.push('\n');
    for tab in Tab::ALL {
        out.push_str(&format!("\n{} ({})\n", tab.title(), app.count(tab)));
        let rows = app.rows(tab);
        if rows.is_empty() {
            out.push_str("  none\n");
            continue;
        }
        let header: Vec<String> = tab.columns().iter().map(|c| c.to_uppercase()).collect();
        let lines: Vec<&[String]> =
            std::iter::once(header.as_slice()).chain(rows.iter().map(|r| r.cells.as_slice())).collect();
        let widths: Vec<usize> = (0..header.len())
            .map(|i| lines.iter().map(|cells| cells[i].chars().count()).max().unwrap_or(0))
            .collect();
        for cells in lines {
            let mut line = String::from(" ");
            for (cell, width) in cells.iter().zip(&widths) {
                line.push_str(&format!(" {cell:<width$} "));
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::tests::{NOW, sample};

    #[test]
    fn the_header_tells_when_the_certificate_expires() {
        let now =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
        let mut snapshot = sample();
        snapshot.certificate_expiry = Some(now + 30 * 86_400 + 3600 + 30);
        assert!(
            header(&snapshot)[0].ends_with(" · certificate expires in 30d 01h"),
            "{}",
            header(&snapshot)[0]
        );
        snapshot.certificate_expiry = Some(now - 10);
        assert!(header(&snapshot)[0].ends_with(" · certificate EXPIRED"), "{}", header(&snapshot)[0]);
    }

    #[test]
    fn the_header_names_the_cluster_node_and_its_state() {
        use remoteproxy_wire::monitor::{ClusterNode, ClusterStatistic};
        let mut snapshot = sample();
        let node = |id: &str| ClusterNode { id: id.into(), address: "10.0.0.1:2214".into() };
        snapshot.cluster_statistic = Some(ClusterStatistic {
            node_id: "node-a".into(),
            redis: "down".into(),
            draining: true,
            nodes: vec![node("node-a"), node("node-b")],
            relayed_tunnels: [("node-b".to_string(), 3)].into(),
            relayed_total: 9,
        });
        assert!(
            header(&snapshot)[0]
                .ends_with(" · cluster node node-a (Redis DOWN, 2 nodes, 3 tunnels relayed) · DRAINING"),
            "{}",
            header(&snapshot)[0]
        );
    }

    #[test]
    fn the_summary_has_the_header_and_every_tab() {
        let mut app = App::new(true);
        let mut snapshot = sample();
        snapshot.tunnel_proxy_statistic.transports = [("TCP".to_string(), 3), ("unix".to_string(), 1)].into();
        app.update(snapshot, NOW);
        let text = render(&app);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "Broker broker · version 0.1.0 · API  · up 1h 02m");
        assert_eq!(lines[1], "Proxy        3 clients · 1 tunnel · 0 B/s");
        assert_eq!(lines[2], "TunnelProxy  0 servers · 0 clients · 0 B/s · TCP 3 · unix 1");
        assert_eq!(lines[3], "Totals       0 clients · 0 tunnels · 0 B relayed");
        assert_eq!(lines[5], "Clients (3)");
        assert!(lines[6].starts_with("  NAME     ADDRESS    USER   STATE"), "{}", lines[6]);
        assert!(lines[7].starts_with("  alone    192.0.2.1  alice  waiting"), "{}", lines[7]);
        assert!(text.contains("\nTunnels (1)\n  CLIENT ONE"), "{text}");
        assert!(text.contains("\nTunnelProxy servers (2)\n"), "{text}");
        assert!(text.contains("\n  └ app "), "{text}");

        let mut empty = App::new(false);
        empty.update(Snapshot::default(), NOW);
        assert!(render(&empty).contains("\nClients (0)\n  none\n"));
    }
}
