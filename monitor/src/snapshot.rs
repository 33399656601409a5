//! The snapshot types are the broker's own, from the wire crate.

pub use remoteproxy_wire::monitor::*;
