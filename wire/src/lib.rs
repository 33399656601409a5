//! What the remoteproxy broker and its clients both speak, so neither depends on the other:
//!
//! * [`slip`]: the TunnelProxy (v2) framing, SLIP with socket addresses (its items are also at
//!   the crate root);
//! * [`TunnelProxyError`] (`outcome.rs`): the v2 registration results;
//! * [`AuthenticationError`] (`authentication.rs`): the v1 `Authenticate` outcomes;
//! * [`monitor`]: the snapshot the broker's monitor socket sends;
//! * [`Transport`] (`transport.rs`): the listener kinds and their names.
//!
//! Small and dependency-light on purpose: the client library, the broker and the authenticators
//! all build on it.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod authentication;
pub mod monitor;
pub mod outcome;
pub mod slip;
mod transport;

pub use authentication::AuthenticationError;
pub use outcome::TunnelProxyError;
pub use slip::*;
pub use transport::Transport;
