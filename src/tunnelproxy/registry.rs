//! Which uuids are registered, as servers or as clients, across every v2 connection.
//!
//! One lock over one map makes the registration rules atomic: a uuid is a server or a client or
//! free, so duplicate and cross registrations are refused no matter how connections race. Each
//! entry is freed by its owner's guard.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use uuid::Uuid;

use super::control::ControlSender;

/// How to reach a registered server's actor.
#[derive(Clone)]
pub struct ServerHandle {
    pub control: ControlSender,
}

enum Entry {
    Server { epoch: u64, handle: ServerHandle },
    Client { epoch: u64 },
}

impl Entry {
    fn epoch(&self) -> u64 {
        match self {
            Entry::Server { epoch, .. } | Entry::Client { epoch } => *epoch,
        }
    }
}

/// Why a registration was refused, with the close reason the reference uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The uuid is registered in the same role.
    AlreadyRegistered,
    /// The uuid is registered in the other role.
    CrossRegistration,
    /// No server has the requested uuid.
    ServerNotFound,
}

impl Refusal {
    /// The close reason.
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::AlreadyRegistered => "Already registered",
            Refusal::CrossRegistration => "UUID cross registeration",
            Refusal::ServerNotFound => "Unknown server",
        }
    }
}

/// Called with a server's uuid and registration epoch when it is gone (a cluster removes its
/// entry).
pub type OnServerGone = Box<dyn Fn(Uuid, u64) + Send + Sync>;

/// All v2 registrations.
#[derive(Default)]
pub struct Registry {
    entries: Mutex<HashMap<Uuid, Entry>>,
    epochs: AtomicU64,
    on_server_gone: Option<OnServerGone>,
}

impl Registry {
    /// A registry that calls `on_server_gone` for every server registration that ends.
    pub fn with_on_server_gone(on_server_gone: OnServerGone) -> Registry {
        Registry { on_server_gone: Some(on_server_gone), ..Registry::default() }
    }

    /// Registers a server uuid.
    pub fn register_server(self: &Arc<Self>, uuid: Uuid, handle: ServerHandle) -> Result<Guard, Refusal> {
        let mut entries = self.entries.lock().expect("registry lock poisoned");
        match entries.get(&uuid) {
            Some(Entry::Server { .. }) => return Err(Refusal::AlreadyRegistered),
            Some(Entry::Client { .. }) => return Err(Refusal::CrossRegistration),
            None => {}
        }
        let epoch = self.epochs.fetch_add(1, Ordering::Relaxed);
        entries.insert(uuid, Entry::Server { epoch, handle });
        Ok(Guard { registry: self.clone(), uuid, epoch })
    }

    /// Registers a client uuid with the server it wants, in the reference's order of checks.
    pub fn register_client(
        self: &Arc<Self>,
        uuid: Uuid,
        server: Uuid,
    ) -> Result<(Guard, ServerHandle), Refusal> {
        let mut entries = self.entries.lock().expect("registry lock poisoned");
        match entries.get(&uuid) {
            Some(Entry::Client { .. }) => return Err(Refusal::AlreadyRegistered),
            Some(Entry::Server { .. }) => return Err(Refusal::CrossRegistration),
            None => {}
        }
        let Some(Entry::Server { handle, .. }) = entries.get(&server) else {
            return Err(Refusal::ServerNotFound);
        };
        let handle = handle.clone();
        let epoch = self.epochs.fetch_add(1, Ordering::Relaxed);
        entries.insert(uuid, Entry::Client { epoch });
        Ok((Guard { registry: self.clone(), uuid, epoch }, handle))
    }

    /// Registered servers and clients (for tests and the monitor).
    pub fn counts(&self) -> (usize, usize) {
        let entries = self.entries.lock().expect("registry lock poisoned");
        let servers = entries.values().filter(|e| matches!(e, Entry::Server { .. })).count();
        (servers, entries.len() - servers)
    }
}

/// Frees a registration when dropped.
pub struct Guard {
    registry: Arc<Registry>,
    uuid: Uuid,
    epoch: u64,
}

impl Guard {
    /// The registration's epoch: what a cluster entry names.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let mut entries = self.registry.entries.lock().expect("registry lock poisoned");
        if entries.get(&self.uuid).is_some_and(|e| e.epoch() == self.epoch) {
            if let (Some(Entry::Server { .. }), Some(gone)) =
                (entries.remove(&self.uuid), &self.registry.on_server_gone)
            {
                gone(self.uuid, self.epoch);
            }
            crate::maps::shrink_when_sparse(&mut entries);
        }
    }
}
