//! What a server connection's writer sends and on whose behalf: the encoded frames, the state a
//! client shares between its stream and the demultiplexer, and the requests on address 0. Its
//! own module so that the stream (`incoming.rs`) and the demultiplexer (`mux.rs`) both depend on
//! it and not on each other.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use bytes::Bytes;
use remoteproxy_wire::JSON_RPC_ADDRESS;
use serde_json::{Value, json};

/// What the demultiplexer and the stream know about one client.
#[derive(Debug)]
pub(crate) struct ClientState {
    pub(crate) address: u16,
    /// The broker said `ClientDisconnected` (or gave the address to someone else): nothing more
    /// may be sent to this address on this client's behalf.
    disconnected: AtomicBool,
    /// Bytes from the client queued for the application and not read yet.
    pub(crate) queued: AtomicUsize,
    /// The application let `queued` pass the limit: the client was disconnected and bytes were
    /// lost, which its stream reports as an error.
    overflowed: AtomicBool,
}

impl ClientState {
    pub(crate) fn new(address: u16) -> Arc<ClientState> {
        Arc::new(ClientState {
            address,
            disconnected: AtomicBool::new(false),
            queued: AtomicUsize::new(0),
            overflowed: AtomicBool::new(false),
        })
    }

    pub(crate) fn mark_overflowed(&self) {
        self.overflowed.store(true, Ordering::SeqCst);
    }

    pub(crate) fn is_overflowed(&self) -> bool {
        self.overflowed.load(Ordering::SeqCst)
    }

    pub(crate) fn mark_disconnected(&self) {
        self.disconnected.store(true, Ordering::SeqCst);
    }

    pub(crate) fn is_disconnected(&self) -> bool {
        self.disconnected.load(Ordering::SeqCst)
    }
}

/// An encoded frame for the writer.
#[derive(Debug)]
pub(crate) struct Outgoing {
    pub(crate) frame: Bytes,
    /// The client the frame speaks for: once that client is gone, its address may belong to a
    /// new client, so its remaining frames (data or its `DisconnectClient`) are dropped.
    owner: Option<Arc<ClientState>>,
}

impl Outgoing {
    pub(crate) fn for_client(frame: Bytes, owner: Arc<ClientState>) -> Outgoing {
        Outgoing { frame, owner: Some(owner) }
    }

    pub(crate) fn control(frame: Bytes) -> Outgoing {
        Outgoing { frame, owner: None }
    }

    pub(crate) fn is_current(&self) -> bool {
        self.owner.as_ref().is_none_or(|owner| !owner.is_disconnected())
    }
}

/// A request to the broker on the JSON-RPC address.
pub(crate) fn request_frame(id: i64, method: &str, params: Value) -> Bytes {
    let mut text = json!({"id": id, "method": method, "params": params}).to_string();
    text.push('\n');
    remoteproxy_wire::encode(JSON_RPC_ADDRESS, text.as_bytes())
}

/// `TunnelProxy.DisconnectClient` for `address`.
pub(crate) fn disconnect_frame(id: i64, address: u16) -> Bytes {
    request_frame(id, "TunnelProxy.DisconnectClient", json!({"socketAddress": address}))
}
