//! The interactive view: keys from a reader thread, snapshots from a polling task, signals, and
//! a redraw after each of them.

use std::io;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use ratatui::layout::{Position, Rect};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, MissedTickBehavior};

use crate::app::{App, Input, Tab};
use crate::connection::Connection;
use crate::snapshot::Snapshot;
use crate::{terminal, ui};

/// Time between two refreshes.
pub const REFRESH: Duration = Duration::from_secs(1);

/// Unix seconds now.
pub fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default()
}

/// Runs the live view until `q` (exit code 0) or a signal (128 + its number).
pub async fn run(
    socket: PathBuf,
    connection: Connection,
    first: Snapshot,
    print_all: bool,
) -> io::Result<u8> {
    // Signals are ours before the terminal changes, so none can end the process in raw mode.
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    let mut hangup = signal(SignalKind::hangup())?;

    let mut app = App::new(print_all);
    app.update(first, unix_now());
    let (print_all_tx, print_all_rx) = watch::channel(print_all);
    let (snapshot_tx, mut snapshots) = mpsc::channel(1);
    let poller = tokio::spawn(poll(socket, connection, print_all_rx, snapshot_tx));

    let guard = terminal::enter()?;
    let mut terminal = Terminal::new(CrosstermBackend::new(io::stdout()))?;
    let mut keys = read_keys();
    let code = loop {
        let size = terminal.size()?;
        app.page = ui::page_rows(Rect::from((Position::ORIGIN, size)));
        terminal.draw(|frame| ui::draw(frame, &app))?;
        tokio::select! {
            key = keys.recv() => match key {
                Some(Ok(Event::Key(key))) => {
                    if let Some(input) = input(key) {
                        app.handle(input);
                        print_all_tx.send_if_modified(|all| std::mem::replace(all, app.print_all) != app.print_all);
                    }
                }
                Some(Ok(_)) => {} // a resize: redraw
                Some(Err(error)) => break Err(error),
                None => break Err(io::Error::other("the terminal's input ended")),
            },
            Some(result) = snapshots.recv() => match result {
                Ok(snapshot) => app.update(snapshot, unix_now()),
                Err(error) => app.failed(error),
            },
            _ = interrupt.recv() => break Ok(128 + 2),
            _ = terminate.recv() => break Ok(128 + 15),
            _ = hangup.recv() => break Ok(128 + 1),
        }
        if app.quit {
            break Ok(0);
        }
    };
    poller.abort();
    drop(terminal);
    drop(guard);
    code
}

/// What a key press means.
fn input(key: KeyEvent) -> Option<Input> {
    if key.kind != KeyEventKind::Press {
        return None;
    }
    Some(match key.code {
        KeyCode::Char('c') if key.modifiers.contains(KeyModifiers::CONTROL) => Input::Quit,
        KeyCode::Char('q' | 'Q') | KeyCode::Esc => Input::Quit,
        KeyCode::Tab | KeyCode::Right | KeyCode::Char('l') => Input::NextTab,
        KeyCode::BackTab | KeyCode::Left | KeyCode::Char('h') => Input::PreviousTab,
        KeyCode::Char('1') => Input::Tab(Tab::Clients),
        KeyCode::Char('2') => Input::Tab(Tab::Tunnels),
        KeyCode::Char('3') => Input::Tab(Tab::Servers),
        KeyCode::Char('4') => Input::Tab(Tab::Nodes),
        KeyCode::Char('5') => Input::Tab(Tab::Meetings),
        KeyCode::Up | KeyCode::Char('k') => Input::Up,
        KeyCode::Down | KeyCode::Char('j') => Input::Down,
        KeyCode::PageUp => Input::PageUp,
        KeyCode::PageDown | KeyCode::Char(' ') => Input::PageDown,
        KeyCode::Home | KeyCode::Char('g') => Input::Home,
        KeyCode::End | KeyCode::Char('G') => Input::End,
        KeyCode::Char('s') => Input::NextSort,
        KeyCode::Char('r') => Input::ReverseSort,
        KeyCode::Char('a') => Input::ToggleAll,
        _ => return None,
    })
}

/// Terminal events, read on a thread of their own (crossterm's reads block).
fn read_keys() -> mpsc::Receiver<io::Result<Event>> {
    let (tx, rx) = mpsc::channel(16);
    std::thread::spawn(move || {
        loop {
            match event::poll(Duration::from_millis(250)) {
                Ok(true) => {
                    let event = event::read();
                    let failed = event.is_err();
                    if tx.blocking_send(event).is_err() || failed {
                        return;
                    }
                }
                Ok(false) if tx.is_closed() => return,
                Ok(false) => {}
                Err(error) => {
                    let _ = tx.blocking_send(Err(error));
                    return;
                }
            }
        }
    });
    rx
}

/// Asks for a snapshot every second (and at once when `-a` is toggled), reconnecting after a
/// failure; each result goes to the view.
async fn poll(
    socket: PathBuf,
    connection: Connection,
    mut print_all: watch::Receiver<bool>,
    results: mpsc::Sender<Result<Snapshot, String>>,
) {
    let mut connection = Some(connection);
    let mut ticks = tokio::time::interval_at(Instant::now() + REFRESH, REFRESH);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            changed = print_all.changed() => if changed.is_err() { return },
        }
        let all = *print_all.borrow_and_update();
        let result = match connection.as_mut() {
            Some(c) => c.refresh(all).await,
            None => match Connection::connect(&socket).await {
                Ok(c) => connection.insert(c).refresh(all).await,
                Err(error) => Err(error),
            },
        };
        if result.is_err() {
            connection = None;
        }
        if results.send(result.map(|reply| reply.snapshot).map_err(|e| e.to_string())).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(code: KeyCode) -> KeyEvent {
        KeyEvent::new(code, KeyModifiers::NONE)
    }

    #[test]
    fn keys_map_to_inputs() {
        assert_eq!(input(key(KeyCode::Char('q'))), Some(Input::Quit));
        assert_eq!(input(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL)), Some(Input::Quit));
        assert_eq!(input(key(KeyCode::Char('c'))), None);
        assert_eq!(input(key(KeyCode::Tab)), Some(Input::NextTab));
        assert_eq!(input(key(KeyCode::Char('3'))), Some(Input::Tab(Tab::Servers)));
        assert_eq!(input(key(KeyCode::Char('s'))), Some(Input::NextSort));
        let mut release = key(KeyCode::Char('q'));
        release.kind = KeyEventKind::Release;
        assert_eq!(input(release), None);
    }
}
