//! Drawing the live view with ratatui: header, tabs, the selected tab's table, a status line.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Modifier, Style, Stylize};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Cell, Paragraph, Row, Table, TableState, Tabs};

use crate::app::{App, Tab};
use crate::summary;

const HELP: &str = "q quit · tab/←/→ switch · ↑/↓/PgUp/PgDn scroll · s sort · r reverse · a idle";

/// Header, tabs, table, status line.
fn areas(area: Rect) -> [Rect; 4] {
    Layout::vertical([
        Constraint::Length(6),
        Constraint::Length(1),
        Constraint::Fill(1),
        Constraint::Length(1),
    ])
    .areas(area)
}

/// Table rows that fit on one screen of this size (for PgUp/PgDn).
pub fn page_rows(area: Rect) -> usize {
    areas(area)[2].height.saturating_sub(1) as usize
}

pub fn draw(frame: &mut Frame, app: &App) {
    let [header, tabs, table, status] = areas(frame.area());
    draw_header(frame, app, header);
    let titles = Tab::ALL.map(|tab| format!("{} ({})", tab.title(), app.count(tab)));
    frame.render_widget(
        Tabs::new(titles)
            .select(app.tab.index())
            .highlight_style(Style::new().add_modifier(Modifier::BOLD | Modifier::REVERSED)),
        tabs,
    );
    draw_table(frame, app, table);
    let status_line = match &app.error {
        Some(error) => Line::from(Span::raw(format!(" {error}; retrying")).red().bold()),
        None => Line::from(Span::raw(format!(" {HELP}")).dim()),
    };
    frame.render_widget(Paragraph::new(status_line), status);
}

fn draw_header(frame: &mut Frame, app: &App, area: Rect) {
    let mut title = " remoteproxy-monitor ".to_string();
    if app.print_all {
        title.push_str("(all servers) ");
    }
    let block = Block::bordered().title(title.bold());
    let lines: Vec<Line> = match &app.snapshot {
        Some(snapshot) => {
            let [broker, proxy, tunnel_proxy, totals] = summary::header(snapshot);
            vec![Line::from(broker.bold()), Line::from(proxy), Line::from(tunnel_proxy), Line::from(totals)]
        }
        None => vec![Line::from("waiting for the broker…")],
    };
    frame.render_widget(Paragraph::new(lines).block(block), area);
}

fn draw_table(frame: &mut Frame, app: &App, area: Rect) {
    let tab = app.tab;
    let sort = app.sort(tab);
    let rows = app.rows(tab);
    let columns = tab.columns();
    let header = Row::new(columns.iter().enumerate().map(|(i, name)| {
        let marker = match (i == sort.column, sort.descending) {
            (false, _) => "",
            (true, false) => " ▲",
            (true, true) => " ▼",
        };
        Cell::from(format!("{name}{marker}"))
    }))
    .style(Style::new().add_modifier(Modifier::BOLD | Modifier::UNDERLINED));
    // Each column as wide as its widest cell; the last (a uuid) gets what is left, so a narrow
    // terminal cuts it first.
    let widths: Vec<Constraint> = (0..columns.len())
        .map(|i| {
            let widest = rows.iter().map(|r| r.cells[i].chars().count()).max().unwrap_or(0);
            let width = widest.max(columns[i].chars().count() + 2) as u16;
            if i + 1 == columns.len() { Constraint::Fill(1) } else { Constraint::Length(width) }
        })
        .collect();
    let body = rows.iter().map(|row| {
        let style = if row.child { Style::new().dim() } else { Style::new() };
        Row::new(row.cells.iter().map(|c| Cell::from(c.as_str()))).style(style)
    });
    let table = Table::new(body, widths)
        .header(header)
        .column_spacing(2)
        .row_highlight_style(Style::new().add_modifier(Modifier::REVERSED));
    let mut state = TableState::default().with_selected((!rows.is_empty()).then(|| app.selected(tab)));
    frame.render_stateful_widget(table, area, &mut state);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::tests::{NOW, sample};
    use crate::app::{Input, Tab};
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;

    fn screen(app: &App, width: u16, height: u16) -> String {
        let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
        terminal.draw(|frame| draw(frame, app)).unwrap();
        let buffer = terminal.backend().buffer();
        (0..height)
            .map(|y| (0..width).map(|x| buffer[(x, y)].symbol()).collect::<String>().trim_end().to_string())
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn the_clients_tab_shows_the_header_and_every_client() {
        let mut app = App::new(false);
        app.update(sample(), NOW);
        let text = screen(&app, 120, 16);
        println!("{text}");
        assert!(text.contains("Broker broker · version 0.1.0"), "{text}");
        assert!(text.contains("Proxy        3 clients · 1 tunnel"), "{text}");
        assert!(text.contains("Clients (3)") && text.contains("TunnelProxy servers (2)"), "{text}");
        assert!(text.contains("Name ▲"), "{text}");
        for name in ["alone", "Gateway", "phone"] {
            assert!(text.contains(name), "{name}: {text}");
        }
        assert!(text.contains("q quit"), "{text}");

        app.handle(Input::Tab(Tab::Servers));
        app.handle(Input::ReverseSort);
        let text = screen(&app, 120, 16);
        assert!(text.contains("Name ▼") && text.contains("└ zeta-app"), "{text}");

        app.failed("the broker closed the monitor connection".into());
        assert!(screen(&app, 120, 16).contains("the broker closed the monitor connection; retrying"));
    }

    #[test]
    fn every_tab_title_fits_an_80_column_terminal_and_the_nodes_tab_draws() {
        use crate::snapshot::{ClusterNode, ClusterStatistic};
        let mut snapshot = sample();
        snapshot.cluster_statistic = Some(ClusterStatistic {
            node_id: "node-a".into(),
            redis: "up".into(),
            nodes: vec![ClusterNode { id: "node-a".into(), address: "10.0.0.11:2214".into() }],
            ..Default::default()
        });
        let mut app = App::new(false);
        app.update(snapshot, NOW);
        app.handle(Input::Tab(Tab::Nodes));
        let text = screen(&app, 80, 12);
        println!("{text}");
        assert!(text.contains("Nodes (1) │ Meetings (0)"), "{text}");
        assert!(text.contains("Relay address") && text.contains("node-a  10.0.0.11:2214"), "{text}");
        assert!(text.contains("this node"), "{text}");
    }

    #[test]
    fn a_narrow_terminal_cuts_the_uuid_column_first() {
        let mut app = App::new(false);
        app.update(sample(), NOW);
        let text = screen(&app, 80, 12);
        println!("{text}");
        assert!(text.contains("Received") && text.contains("192.0.2.1"), "{text}");
        assert!(text.contains("1m 05s"), "{text}");
    }

    #[test]
    fn page_rows_follow_the_terminal_height() {
        assert_eq!(page_rows(Rect::new(0, 0, 80, 24)), 24 - 6 - 1 - 1 - 1);
        assert_eq!(page_rows(Rect::new(0, 0, 80, 3)), 0);
    }
}
