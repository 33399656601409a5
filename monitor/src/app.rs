//! The state of the live view: which tab, how each tab is sorted, which row is selected, and
//! the rows of each tab from the last snapshot (built in `rows`). Drawing is in `ui`; nothing
//! here touches the terminal, so all of it is unit-tested.

use crate::rows::{Row, client_rows, meeting_rows, node_rows, server_rows, sorted, tunnel_rows};
use crate::snapshot::Snapshot;

/// The tabs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tab {
    /// v1 connections.
    Clients,
    /// v1 tunnels.
    Tunnels,
    /// TunnelProxy servers with their clients.
    Servers,
    /// Cluster nodes (with `[Cluster]`).
    Nodes,
    /// Rendezvous meetings (with `[RendezvousServer]`).
    Meetings,
}

/// How many tabs there are.
const TABS: usize = 5;

impl Tab {
    pub const ALL: [Tab; TABS] = [Tab::Clients, Tab::Tunnels, Tab::Servers, Tab::Nodes, Tab::Meetings];

    pub fn index(self) -> usize {
        self as usize
    }

    pub fn title(self) -> &'static str {
        match self {
            Tab::Clients => "Clients",
            Tab::Tunnels => "Tunnels",
            Tab::Servers => "TunnelProxy servers",
            Tab::Nodes => "Nodes",
            Tab::Meetings => "Meetings",
        }
    }

    /// Column headers.
    pub fn columns(self) -> &'static [&'static str] {
        match self {
            Tab::Clients => &["Name", "Address", "User", "State", "Connected", "Sent", "Received", "UUID"],
            Tab::Tunnels => &["Client one", "Client two", "User", "Connected", "One → two", "Two → one"],
            Tab::Servers => &["Name", "Address", "Clients", "Connected", "Sent", "Received", "UUID"],
            Tab::Nodes => &["Node", "Relay address", "Relayed tunnels", "State"],
            Tab::Meetings => &["Meeting", "State", "Relayed", "Peer one", "Peer two"],
        }
    }

    /// The column sorted by when the view starts: the name.
    fn default_sort(self) -> Sort {
        Sort { column: 0, descending: false }
    }
}

/// How a tab is sorted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sort {
    pub column: usize,
    pub descending: bool,
}

/// What a key press asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    Quit,
    NextTab,
    PreviousTab,
    Tab(Tab),
    Up,
    Down,
    PageUp,
    PageDown,
    Home,
    End,
    /// Sort by the next column.
    NextSort,
    /// Reverse the order.
    ReverseSort,
    /// Show or hide TunnelProxy servers without clients.
    ToggleAll,
}

/// The live view.
#[derive(Debug)]
pub struct App {
    pub tab: Tab,
    sort: [Sort; TABS],
    selected: [usize; TABS],
    /// Rows that fit on one page (set by the drawing code), for PgUp/PgDn.
    pub page: usize,
    /// The last snapshot, and when it arrived (unix seconds).
    pub snapshot: Option<Snapshot>,
    pub now: u64,
    /// The last refresh failed: why.
    pub error: Option<String>,
    /// Ask for idle TunnelProxy servers too.
    pub print_all: bool,
    pub quit: bool,
}

impl App {
    pub fn new(print_all: bool) -> App {
        App {
            tab: Tab::Clients,
            sort: Tab::ALL.map(Tab::default_sort),
            selected: [0; TABS],
            page: 10,
            snapshot: None,
            now: 0,
            error: None,
            print_all,
            quit: false,
        }
    }

    /// A new snapshot arrived at `now`.
    pub fn update(&mut self, snapshot: Snapshot, now: u64) {
        self.snapshot = Some(snapshot);
        self.now = now;
        self.error = None;
        self.clamp();
    }

    /// The last refresh failed; the last snapshot stays on screen.
    pub fn failed(&mut self, error: String) {
        self.error = Some(error);
    }

    pub fn sort(&self, tab: Tab) -> Sort {
        self.sort[tab.index()]
    }

    /// The selected row of `tab`.
    pub fn selected(&self, tab: Tab) -> usize {
        self.selected[tab.index()]
    }

    pub fn handle(&mut self, input: Input) {
        let tab = self.tab.index();
        match input {
            Input::Quit => self.quit = true,
            Input::NextTab => self.tab = Tab::ALL[(tab + 1) % TABS],
            Input::PreviousTab => self.tab = Tab::ALL[(tab + TABS - 1) % TABS],
            Input::Tab(to) => self.tab = to,
            Input::Up => self.move_by(-1),
            Input::Down => self.move_by(1),
            Input::PageUp => self.move_by(-(self.page.max(1) as isize)),
            Input::PageDown => self.move_by(self.page.max(1) as isize),
            Input::Home => self.selected[tab] = 0,
            Input::End => self.selected[tab] = usize::MAX,
            Input::NextSort => {
                let columns = self.tab.columns().len();
                self.sort[tab] = Sort { column: (self.sort[tab].column + 1) % columns, descending: false };
            }
            Input::ReverseSort => self.sort[tab].descending ^= true,
            Input::ToggleAll => self.print_all ^= true,
        }
        self.clamp();
    }

    fn move_by(&mut self, delta: isize) {
        let selected = &mut self.selected[self.tab.index()];
        *selected = selected.saturating_add_signed(delta);
    }

    /// Keeps every selection on a row that exists.
    fn clamp(&mut self) {
        for tab in Tab::ALL {
            let last = self.rows(tab).len().saturating_sub(1);
            let selected = &mut self.selected[tab.index()];
            *selected = (*selected).min(last);
        }
    }

    /// The rows of `tab`, sorted.
    pub fn rows(&self, tab: Tab) -> Vec<Row> {
        let Some(snapshot) = &self.snapshot else { return Vec::new() };
        let sort = self.sort(tab);
        match tab {
            Tab::Clients => sorted(client_rows(snapshot, self.now), sort),
            Tab::Tunnels => sorted(tunnel_rows(snapshot, self.now), sort),
            Tab::Servers => server_rows(snapshot, self.now, sort),
            Tab::Nodes => sorted(node_rows(snapshot), sort),
            Tab::Meetings => sorted(meeting_rows(snapshot), sort),
        }
    }

    /// How many rows `tab` has, for its title.
    pub fn count(&self, tab: Tab) -> usize {
        let Some(s) = &self.snapshot else { return 0 };
        match tab {
            Tab::Clients => s.proxy_statistic.clients.len(),
            Tab::Tunnels => s.proxy_statistic.tunnels.len(),
            Tab::Servers => s.tunnel_proxy_statistic.tunnel_connections.len(),
            Tab::Nodes => node_rows(s).len(),
            Tab::Meetings => s.rendezvous_statistic.as_ref().map_or(0, |r| r.meetings.len()),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::snapshot::{Client, Server, ServerClient, Tunnel};

    pub(crate) const NOW: u64 = 1_800_000_000;

    /// Two tunnelled clients, one waiting; a server with two clients and an idle one.
    pub(crate) fn sample() -> Snapshot {
        let client = |id: &str, name: &str, age: u64, rx: u64, tx: u64, tunnel: bool| Client {
            address: "192.0.2.1".into(),
            authenticated: true,
            id: id.into(),
            name: name.into(),
            rx_data_count: rx,
            timestamp: NOW - age,
            tunnel_connected: tunnel,
            tx_data_count: tx,
            user_name: "alice".into(),
            uuid: format!("uuid-{name}"),
        };
        let mut s =
            Snapshot { server_name: "broker".into(), server_version: "0.1.0".into(), ..Default::default() };
        s.uptime = Some(3725);
        let p = &mut s.proxy_statistic;
        p.clients = vec![
            client("{1}", "phone", 65, 2048, 100, true),
            client("{2}", "Gateway", 70, 100, 2048, true),
            client("{3}", "alone", 5, 0, 0, false),
        ];
        p.tunnels = vec![Tunnel { client_one: "{2}".into(), client_two: "{1}".into(), timestamp: NOW - 60 }];
        p.client_count = 3;
        p.tunnel_count = 1;
        let sc = |name: &str, age: u64, rx: u64| ServerClient {
            address: "198.51.100.9".into(),
            client_uuid: format!("{{{name}}}"),
            id: format!("id-{name}"),
            name: name.into(),
            rx_data_count: rx,
            timestamp: NOW - age,
            tx_data_count: 0,
        };
        s.tunnel_proxy_statistic.tunnel_connections = vec![
            Server {
                name: "device".into(),
                client_connections: vec![sc("zeta-app", 10, 5), sc("app", 20, 500)],
                timestamp: NOW - 100,
                rx_data_count: 505,
                ..Default::default()
            },
            Server { name: "idle".into(), timestamp: NOW - 200, ..Default::default() },
        ];
        s
    }

    fn app() -> App {
        let mut app = App::new(false);
        app.update(sample(), NOW);
        app
    }

    fn column(app: &App, tab: Tab, column: usize) -> Vec<String> {
        app.rows(tab).into_iter().map(|r| r.cells[column].clone()).collect()
    }

    #[test]
    fn clients_sort_by_name_then_by_any_column_either_way() {
        let mut app = app();
        assert_eq!(column(&app, Tab::Clients, 0), ["alone", "Gateway", "phone"], "case-insensitive");
        assert_eq!(column(&app, Tab::Clients, 3), ["waiting", "tunnel", "tunnel"]);
        assert_eq!(column(&app, Tab::Clients, 4), ["5s", "1m 10s", "1m 05s"]);
        app.handle(Input::ReverseSort);
        assert_eq!(column(&app, Tab::Clients, 0), ["phone", "Gateway", "alone"]);
        for _ in 0..4 {
            app.handle(Input::NextSort);
        }
        assert_eq!(app.sort(Tab::Clients), Sort { column: 4, descending: false }, "a new column sorts up");
        assert_eq!(column(&app, Tab::Clients, 0), ["alone", "phone", "Gateway"], "newest first");
        app.handle(Input::NextSort);
        assert_eq!(column(&app, Tab::Clients, 5), ["0 B", "100 B", "2.0 KiB"], "sent, by bytes");
        app.handle(Input::ReverseSort);
        assert_eq!(column(&app, Tab::Clients, 5), ["2.0 KiB", "100 B", "0 B"]);
        for _ in 0..3 {
            app.handle(Input::NextSort);
        }
        assert_eq!(app.sort(Tab::Clients).column, 0, "wraps around");
        assert_eq!(app.sort(Tab::Tunnels), Sort { column: 0, descending: false }, "each tab its own");
    }

    #[test]
    fn tunnels_name_both_clients_and_what_each_sent() {
        let app = app();
        let rows = app.rows(Tab::Tunnels);
        assert_eq!(
            rows[0].cells,
            ["Gateway (192.0.2.1)", "phone (192.0.2.1)", "alice", "1m 00s", "100 B", "2.0 KiB"]
        );
    }

    #[test]
    fn servers_are_followed_by_their_clients_sorted_alike() {
        let mut app = app();
        assert_eq!(column(&app, Tab::Servers, 0), ["device", "└ app", "└ zeta-app", "idle"]);
        assert_eq!(column(&app, Tab::Servers, 2), ["2", "", "", "0"]);
        assert_eq!(
            app.rows(Tab::Servers).iter().map(|r| r.child).collect::<Vec<_>>(),
            [false, true, true, false]
        );
        app.handle(Input::Tab(Tab::Servers));
        app.handle(Input::ReverseSort);
        assert_eq!(column(&app, Tab::Servers, 0), ["idle", "device", "└ zeta-app", "└ app"]);
        app.handle(Input::ToggleAll);
        assert!(app.print_all);
    }

    #[test]
    fn tabs_cycle_both_ways() {
        let mut app = app();
        app.handle(Input::NextTab);
        assert_eq!(app.tab, Tab::Tunnels);
        for _ in 0..4 {
            app.handle(Input::NextTab);
        }
        assert_eq!(app.tab, Tab::Clients);
        app.handle(Input::PreviousTab);
        assert_eq!(app.tab, Tab::Meetings);
        app.handle(Input::Tab(Tab::Tunnels));
        assert_eq!(app.tab, Tab::Tunnels);
        app.handle(Input::Quit);
        assert!(app.quit);
    }

    #[test]
    fn nodes_show_where_tunnels_are_relayed_and_meetings_who_met() {
        use crate::snapshot::{ClusterNode, ClusterStatistic, Meeting, MeetingPeer, RendezvousStatistic};
        let mut s = sample();
        let node = |id: &str| ClusterNode { id: id.into(), address: format!("{id}.internal:2214") };
        s.cluster_statistic = Some(ClusterStatistic {
            node_id: "node-b".into(),
            redis: "up".into(),
            draining: true,
            nodes: vec![node("node-b"), node("node-a")],
            relayed_tunnels: [("node-a".to_string(), 3), ("node-c".to_string(), 1)].into(),
            relayed_total: 9,
        });
        let peer = |subject: &str| MeetingPeer { subject: subject.into(), address: "192.0.2.7".into() };
        s.rendezvous_statistic = Some(RendezvousStatistic {
            meetings: vec![
                Meeting { id: "m2".into(), joined: false, bytes: 0, peers: vec![peer("Acme")] },
                Meeting {
                    id: "m1".into(),
                    joined: true,
                    bytes: 4096,
                    peers: vec![peer("Acme"), peer("Bolt")],
                },
            ],
            ..Default::default()
        });
        let mut app = App::new(false);
        app.update(s, NOW);
        assert_eq!(app.count(Tab::Nodes), 3, "the gone node too");
        let nodes: Vec<Vec<String>> = app.rows(Tab::Nodes).into_iter().map(|r| r.cells).collect();
        assert_eq!(
            nodes,
            [
                ["node-a", "node-a.internal:2214", "3", "live"],
                ["node-b", "node-b.internal:2214", "0", "this node, draining"],
                ["node-c", "", "1", "gone"],
            ]
        );
        assert_eq!(app.count(Tab::Meetings), 2);
        let meetings: Vec<Vec<String>> = app.rows(Tab::Meetings).into_iter().map(|r| r.cells).collect();
        assert_eq!(
            meetings,
            [
                ["m1", "joined", "4.0 KiB", "Acme (192.0.2.7)", "Bolt (192.0.2.7)"],
                ["m2", "waiting", "0 B", "Acme (192.0.2.7)", ""],
            ]
        );
        // Without a cluster or a rendezvous listener both tabs are empty.
        assert!(self::app().rows(Tab::Nodes).is_empty() && self::app().rows(Tab::Meetings).is_empty());
    }

    #[test]
    fn the_selection_stays_on_existing_rows() {
        let mut app = app();
        app.handle(Input::Up);
        assert_eq!(app.selected(Tab::Clients), 0);
        app.handle(Input::Down);
        app.handle(Input::Down);
        app.handle(Input::Down);
        assert_eq!(app.selected(Tab::Clients), 2, "three rows");
        app.handle(Input::Home);
        app.page = 2;
        app.handle(Input::PageDown);
        assert_eq!(app.selected(Tab::Clients), 2);
        app.handle(Input::PageUp);
        assert_eq!(app.selected(Tab::Clients), 0);
        app.handle(Input::End);
        assert_eq!(app.selected(Tab::Clients), 2);
        assert_eq!(app.selected(Tab::Servers), 0, "each tab its own");

        // Rows that go away pull the selection along; an empty table selects 0.
        let mut fewer = sample();
        fewer.proxy_statistic.clients.truncate(1);
        app.update(fewer, NOW);
        assert_eq!(app.selected(Tab::Clients), 0);
        app.update(Snapshot::default(), NOW);
        app.handle(Input::Down);
        assert_eq!(app.selected(Tab::Clients), 0);
        assert!(app.rows(Tab::Clients).is_empty());
    }

    #[test]
    fn a_failed_refresh_keeps_the_last_snapshot() {
        let mut app = app();
        app.failed("the broker closed the monitor connection".into());
        assert_eq!(app.count(Tab::Clients), 3);
        assert!(app.error.is_some());
        app.update(sample(), NOW + 1);
        assert_eq!(app.error, None);
        assert_eq!(App::new(true).rows(Tab::Clients), []);
    }
}
