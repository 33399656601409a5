//! Pairing: where authenticated clients wait for their partner, and what they hand over.
//!
//! A tunnel is identified by (token, nonce) (**fix**: the reference keyed nonce clients by the
//! nonce alone, pairing strangers). The key is a SHA-256 digest of both, so the registry holds no
//! token. Pair-or-park happens under one lock in one call, so two clients arriving at once cannot
//! both park or both join.
//!
//! A slot is `Waiting` while its first client is alone and `Busy` from the moment a second client
//! claims it until that tunnel ends; a third client finds it `Busy` and is refused without
//! touching the tunnel. Each slot belongs to one session, identified by an epoch number, and that
//! session's [`SlotGuard`] frees it on drop, so a slot can never outlive its owner.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use remoteproxy_authenticators::Token;
use sha2::{Digest, Sha256};
use tokio::sync::oneshot;

use crate::maps::shrink_when_sparse;
use crate::transport::Connection;

/// Who a client said it is, once authenticated.
#[derive(Debug, Clone)]
pub struct Identity {
    /// `uuid` without braces.
    pub uuid: String,
    pub name: String,
    /// From the authenticator, for logs.
    pub user_name: Option<String>,
}

/// A waiting session's connection, handed to the session that joins it.
pub struct Parked {
    /// The connection, still in its JSON phase.
    pub conn: Connection,
    pub identity: Identity,
}

/// (token, nonce) as a digest, and the token's own digest (for `maxTunnelsPerToken`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TunnelKey {
    pair: [u8; 32],
    token: [u8; 32],
}

impl TunnelKey {
    /// The two digests in hex (pair, then token): how a cluster names the key in Redis and on
    /// its links. Neither gives the token back.
    pub fn to_hex(self) -> (String, String) {
        (crate::cluster::hex(&self.pair), crate::cluster::hex(&self.token))
    }

    /// The key another node named with [`TunnelKey::to_hex`].
    pub fn from_hex(pair: &str, token: &str) -> Option<TunnelKey> {
        Some(TunnelKey { pair: crate::cluster::unhex32(pair)?, token: crate::cluster::unhex32(token)? })
    }

    /// The key of a token and nonce. The token's length is hashed first so ("ab","c") and
    /// ("a","bc") differ.
    pub fn new(token: &Token, nonce: &str) -> TunnelKey {
        let mut hasher = Sha256::new();
        hasher.update((token.expose_secret().len() as u64).to_le_bytes());
        hasher.update(token.expose_secret().as_bytes());
        let token_digest: [u8; 32] = hasher.clone().finalize().into();
        hasher.update(nonce.as_bytes());
        TunnelKey { pair: hasher.finalize().into(), token: token_digest }
    }
}

/// A joining session asks the waiting one for its connection.
pub struct JoinRequest {
    /// Where the waiting session sends its connection, or why it cannot.
    pub reply: oneshot::Sender<Handover>,
}

/// The waiting session's answer to a [`JoinRequest`].
pub enum Handover {
    /// Its connection: the tunnel is the joiner's to run.
    Parked(Box<Parked>),
    /// It joined a partner on another node in the meantime: the joiner is a third client.
    Refused(Refusal),
}

enum Slot {
    /// `claim` names the slot from its first client to its tunnel's end (what a cluster
    /// registers); `epoch` is the session that frees it.
    Waiting {
        epoch: u64,
        claim: u64,
        uuid: String,
        join: oneshot::Sender<JoinRequest>,
    },
    Busy {
        epoch: u64,
        claim: u64,
    },
}

impl Slot {
    fn epoch(&self) -> u64 {
        match self {
            Slot::Waiting { epoch, .. } | Slot::Busy { epoch, .. } => *epoch,
        }
    }

    fn claim(&self) -> u64 {
        match self {
            Slot::Waiting { claim, .. } | Slot::Busy { claim, .. } => *claim,
        }
    }
}

/// Why a client may not use a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The key is already joined or tunnelled.
    TunnelExists,
    /// The waiting client has the same uuid.
    DuplicateUuid,
    /// The token has `maxTunnelsPerToken` tunnels (waiting or running) already.
    TooManyTunnels,
    /// (Cluster) another node's entry named a slot this node no longer has.
    Stale,
}

impl Refusal {
    /// The close reason (PROTOCOL §4, Pairing rules).
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::TunnelExists => "Tunnel already exists for this token nonce combination.",
            Refusal::DuplicateUuid => "Duplicated client UUID.",
            Refusal::TooManyTunnels => "Too many tunnels for this token.",
            Refusal::Stale => crate::protocol::reasons::PARTNER_GONE,
        }
    }

    /// The name on an inter-node link.
    pub fn name(self) -> &'static str {
        match self {
            Refusal::TunnelExists => "tunnelExists",
            Refusal::DuplicateUuid => "duplicateUuid",
            Refusal::TooManyTunnels => "tooManyTunnels",
            Refusal::Stale => "stale",
        }
    }

    /// The refusal an inter-node link names.
    pub fn from_name(name: &str) -> Option<Refusal> {
        [Refusal::TunnelExists, Refusal::DuplicateUuid, Refusal::TooManyTunnels, Refusal::Stale]
            .into_iter()
            .find(|refusal| refusal.name() == name)
    }
}

/// The result of [`Registry::pair_or_park`].
pub enum Pairing {
    /// Nobody was waiting: this client waits now.
    Parked {
        /// Frees the slot when the session ends.
        guard: SlotGuard,
        /// Where a partner's join request arrives.
        join: oneshot::Receiver<JoinRequest>,
    },
    /// A client was waiting: ask it for its connection.
    Join {
        /// The slot, now `Busy` and owned by the joiner.
        guard: SlotGuard,
        /// The waiting session's inbox.
        partner: oneshot::Sender<JoinRequest>,
    },
    /// The client may not use this key.
    Refused(Refusal),
}

/// Called with a slot's key and claim when the slot is gone (a cluster removes its entry).
pub type OnFree = Box<dyn Fn(TunnelKey, u64) + Send + Sync>;

/// Every waiting and active v1 tunnel.
#[derive(Default)]
pub struct Registry {
    table: Mutex<Table>,
    epochs: AtomicU64,
    /// `[Limits] maxTunnelsPerToken`.
    max_per_token: Option<usize>,
    on_free: Option<OnFree>,
}

#[derive(Default)]
struct Table {
    slots: HashMap<TunnelKey, Slot>,
    /// Keys in `slots` per token digest; a token without any has no entry.
    per_token: HashMap<[u8; 32], usize>,
}

impl Registry {
    /// A registry that allows at most `max_per_token` tunnels (waiting or running) per token.
    pub fn new(max_per_token: Option<usize>) -> Registry {
        Registry { max_per_token, ..Registry::default() }
    }

    /// A registry that calls `on_free` for every slot that goes away.
    pub fn with_on_free(max_per_token: Option<usize>, on_free: OnFree) -> Registry {
        Registry { max_per_token, on_free: Some(on_free), ..Registry::default() }
    }

    /// Parks the client or pairs it with the waiting one, in one critical section.
    pub fn pair_or_park(self: &Arc<Self>, key: TunnelKey, uuid: &str) -> Pairing {
        let epoch = self.epochs.fetch_add(1, Ordering::Relaxed);
        let mut table = self.table.lock().expect("registry lock poisoned");
        let Table { slots, per_token } = &mut *table;
        match slots.remove(&key) {
            None => {
                if !self.count_new(per_token, &key.token) {
                    return Pairing::Refused(Refusal::TooManyTunnels);
                }
                let (tx, rx) = oneshot::channel();
                slots.insert(key, Slot::Waiting { epoch, claim: epoch, uuid: uuid.to_string(), join: tx });
                Pairing::Parked { guard: self.guard(key, epoch, epoch), join: rx }
            }
            Some(slot) => Self::join_slot(self, slots, key, slot, epoch, uuid),
        }
    }

    /// A client on another node joins the slot its entry in Redis names (`claim`): like
    /// [`Registry::pair_or_park`], except that it never parks here, and a slot that is not the
    /// one the entry named is [`Refusal::Stale`].
    pub fn join_claimed(self: &Arc<Self>, key: TunnelKey, claim: u64, uuid: &str) -> Pairing {
        let epoch = self.epochs.fetch_add(1, Ordering::Relaxed);
        let mut table = self.table.lock().expect("registry lock poisoned");
        let slots = &mut table.slots;
        match slots.remove(&key) {
            None => Pairing::Refused(Refusal::Stale),
            Some(slot) if slot.claim() != claim => {
                slots.insert(key, slot);
                Pairing::Refused(Refusal::Stale)
            }
            Some(slot) => Self::join_slot(self, slots, key, slot, epoch, uuid),
        }
    }

    /// A client meets a slot that exists: join it, or be refused.
    fn join_slot(
        self: &Arc<Self>,
        slots: &mut HashMap<TunnelKey, Slot>,
        key: TunnelKey,
        slot: Slot,
        epoch: u64,
        uuid: &str,
    ) -> Pairing {
        match slot {
            Slot::Waiting { uuid: waiting, epoch: theirs, claim, join } if waiting == uuid => {
                slots.insert(key, Slot::Waiting { epoch: theirs, claim, uuid: waiting, join });
                Pairing::Refused(Refusal::DuplicateUuid)
            }
            Slot::Waiting { join, claim, .. } => {
                slots.insert(key, Slot::Busy { epoch, claim });
                Pairing::Join { guard: self.guard(key, epoch, claim), partner: join }
            }
            busy @ Slot::Busy { .. } => {
                slots.insert(key, busy);
                Pairing::Refused(Refusal::TunnelExists)
            }
        }
    }

    /// The waiting partner vanished before it answered: the joiner waits in its place, keeping
    /// its slot. `None` when the slot is another's: the partner joined a peer on another node
    /// meanwhile (see [`Registry::occupy`]), so this client is a third one. If that tunnel ended
    /// already and took the slot with it, the joiner waits in a slot of its own, counted like any
    /// (`None` when the token has no room for it).
    pub fn repark(&self, guard: &SlotGuard, uuid: &str) -> Option<oneshot::Receiver<JoinRequest>> {
        let mut table = self.table.lock().expect("registry lock poisoned");
        let Table { slots, per_token } = &mut *table;
        match slots.get(&guard.key) {
            Some(slot) if slot.epoch() != guard.epoch => return None,
            Some(_) => {}
            None if !self.count_new(per_token, &guard.key.token) => return None,
            None => {}
        }
        let (tx, rx) = oneshot::channel();
        let slot = Slot::Waiting { epoch: guard.epoch, claim: guard.claim, uuid: uuid.to_string(), join: tx };
        slots.insert(guard.key, slot);
        Some(rx)
    }

    /// Whether the slot is still `guard`'s (a local client that joined it owns it since).
    pub fn owns(&self, guard: &SlotGuard) -> bool {
        let table = self.table.lock().expect("registry lock poisoned");
        table.slots.get(&guard.key).is_some_and(|slot| slot.epoch() == guard.epoch)
    }

    /// (Cluster) the waiting client joined a partner on another node: from now on its slot is
    /// a running tunnel, and a local client that comes for the key is a third one. The slot is
    /// this client's again even if a local client joined it meanwhile (that one is refused, and
    /// its guard must not free the running tunnel's slot, which `maxTunnelsPerToken` counts).
    pub fn occupy(&self, guard: &SlotGuard) {
        let mut table = self.table.lock().expect("registry lock poisoned");
        if let Some(slot) = table.slots.get_mut(&guard.key)
            && slot.claim() == guard.claim
        {
            *slot = Slot::Busy { epoch: guard.epoch, claim: guard.claim };
        }
    }

    /// How many keys are waiting or tunnelled.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.table.lock().expect("registry lock poisoned").slots.len()
    }

    /// Whether no key is in use.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Counts a new slot of `token`, unless the token has `maxTunnelsPerToken` already.
    fn count_new(&self, per_token: &mut HashMap<[u8; 32], usize>, token: &[u8; 32]) -> bool {
        let count = per_token.entry(*token).or_default();
        if self.max_per_token.is_some_and(|max| *count >= max) {
            if *count == 0 {
                per_token.remove(token);
            }
            return false;
        }
        *count += 1;
        true
    }

    fn guard(self: &Arc<Self>, key: TunnelKey, epoch: u64, claim: u64) -> SlotGuard {
        SlotGuard { registry: self.clone(), key, epoch, claim }
    }
}

/// Ownership of one slot; dropping it frees the slot if it is still this owner's.
pub struct SlotGuard {
    registry: Arc<Registry>,
    key: TunnelKey,
    epoch: u64,
    claim: u64,
}

impl SlotGuard {
    /// The slot's claim (see [`Registry::join_claimed`]).
    pub fn claim(&self) -> u64 {
        self.claim
    }
}

impl Drop for SlotGuard {
    fn drop(&mut self) {
        let mut table = self.registry.table.lock().expect("registry lock poisoned");
        let Table { slots, per_token } = &mut *table;
        if slots.get(&self.key).is_some_and(|slot| slot.epoch() == self.epoch) {
            let claim = slots.remove(&self.key).map(|slot| slot.claim());
            if let (Some(on_free), Some(claim)) = (&self.registry.on_free, claim) {
                on_free(self.key, claim);
            }
            shrink_when_sparse(slots);
            if let Some(count) = per_token.get_mut(&self.key.token) {
                *count -= 1;
                if *count == 0 {
                    per_token.remove(&self.key.token);
                    shrink_when_sparse(per_token);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(token: &str, nonce: &str) -> TunnelKey {
        TunnelKey::new(&Token::new(token), nonce)
    }

    #[test]
    fn keys_separate_token_and_nonce() {
        assert_ne!(key("ab", "c"), key("a", "bc"));
        assert_ne!(key("t1", "n"), key("t2", "n"));
        assert_eq!(key("t", "n"), key("t", "n"));
    }

    #[test]
    fn park_join_refuse_and_release() {
        let registry = Arc::new(Registry::default());
        let Pairing::Parked { guard: first, .. } = registry.pair_or_park(key("t", ""), "a") else { panic!() };
        assert!(matches!(registry.pair_or_park(key("t", ""), "a"), Pairing::Refused(Refusal::DuplicateUuid)));
        let Pairing::Join { guard: second, .. } = registry.pair_or_park(key("t", ""), "b") else { panic!() };
        assert!(matches!(registry.pair_or_park(key("t", ""), "c"), Pairing::Refused(Refusal::TunnelExists)));
        // The first client leaving does not free the slot the joiner owns now.
        drop(first);
        assert_eq!(registry.len(), 1);
        drop(second);
        assert!(registry.is_empty());
    }

    #[test]
    fn a_token_has_at_most_its_tunnels_and_they_come_back() {
        let registry = Arc::new(Registry::new(Some(2)));
        let Pairing::Parked { guard: one, .. } = registry.pair_or_park(key("t", "1"), "a") else { panic!() };
        let Pairing::Join { guard: joined, .. } = registry.pair_or_park(key("t", "1"), "b") else { panic!() };
        let Pairing::Parked { guard: two, .. } = registry.pair_or_park(key("t", "2"), "c") else { panic!() };
        assert!(matches!(
            registry.pair_or_park(key("t", "3"), "d"),
            Pairing::Refused(Refusal::TooManyTunnels)
        ));
        // Joining an existing pair is not a new tunnel; another token has its own count.
        let Pairing::Join { guard: two_joined, .. } = registry.pair_or_park(key("t", "2"), "e") else {
            panic!()
        };
        let Pairing::Parked { guard: _other, .. } = registry.pair_or_park(key("other", "3"), "f") else {
            panic!()
        };
        // The first tunnel ends when its last owner goes (the joiner owns it now).
        drop(one);
        assert!(matches!(
            registry.pair_or_park(key("t", "3"), "d"),
            Pairing::Refused(Refusal::TooManyTunnels)
        ));
        drop(joined);
        assert!(matches!(registry.pair_or_park(key("t", "3"), "d"), Pairing::Parked { .. }));
        drop((two, two_joined));
        assert_eq!(
            registry.table.lock().unwrap().per_token.len(),
            1,
            "only the other token has a tunnel left"
        );
    }

    /// A registry allowing one tunnel per token, a waiting client, and a local client that
    /// joined it while the waiter was joining a partner on another node.
    fn joined_while_away() -> (Arc<Registry>, SlotGuard, SlotGuard) {
        let registry = Arc::new(Registry::new(Some(1)));
        let Pairing::Parked { guard: waiter, .. } = registry.pair_or_park(key("t", "1"), "a") else {
            panic!()
        };
        let Pairing::Join { guard: joiner, .. } = registry.pair_or_park(key("t", "1"), "b") else { panic!() };
        (registry, waiter, joiner)
    }

    #[test]
    fn a_slot_that_went_to_another_node_stays_counted_when_a_local_joiner_is_refused() {
        let (registry, waiter, joiner) = joined_while_away();
        // The waiter's join on another node succeeds: the slot is its running tunnel, the
        // joiner is refused.
        registry.occupy(&waiter);
        assert!(registry.repark(&joiner, "b").is_none(), "the joiner may not wait in the tunnel's place");
        drop(joiner);
        assert_eq!(registry.len(), 1);
        assert!(matches!(registry.pair_or_park(key("t", "1"), "c"), Pairing::Refused(Refusal::TunnelExists)));
        assert!(matches!(
            registry.pair_or_park(key("t", "2"), "d"),
            Pairing::Refused(Refusal::TooManyTunnels)
        ));
        drop(waiter);
        assert!(registry.is_empty());
        assert!(matches!(registry.pair_or_park(key("t", "2"), "d"), Pairing::Parked { .. }));
    }

    #[test]
    fn a_joiner_whose_slot_went_with_an_ended_tunnel_waits_in_a_counted_slot() {
        let (registry, waiter, joiner) = joined_while_away();
        // The waiter's cross-node tunnel took the slot, then ended.
        registry.occupy(&waiter);
        drop(waiter);
        assert!(registry.is_empty());
        assert!(registry.repark(&joiner, "b").is_some(), "nothing runs under this key now");
        assert!(matches!(
            registry.pair_or_park(key("t", "2"), "c"),
            Pairing::Refused(Refusal::TooManyTunnels)
        ));
        drop(joiner);
        assert!(registry.is_empty());
        assert!(matches!(registry.pair_or_park(key("t", "2"), "c"), Pairing::Parked { .. }));
    }

    #[test]
    fn same_nonce_different_tokens_do_not_meet() {
        let registry = Arc::new(Registry::default());
        let _a = registry.pair_or_park(key("t1", "n"), "a");
        let b = registry.pair_or_park(key("t2", "n"), "b");
        assert!(matches!(b, Pairing::Parked { .. }));
        assert_eq!(registry.len(), 2);
    }

    #[test]
    fn the_table_gives_back_a_burst() {
        let registry = Arc::new(Registry::default());
        let parked: Vec<_> =
            (0..5000).map(|i| registry.pair_or_park(key("t", &i.to_string()), "a")).collect();
        let burst = registry.table.lock().unwrap().slots.capacity();
        assert!(burst >= 5000);
        drop(parked);
        assert!(registry.is_empty());
        assert!(
            registry.table.lock().unwrap().slots.capacity() < burst / 8,
            "the capacity shrank with the map"
        );
        // Pairing still works on the shrunk table.
        let _a = registry.pair_or_park(key("t", "x"), "a");
        assert!(matches!(registry.pair_or_park(key("t", "x"), "b"), Pairing::Join { .. }));
    }
}
