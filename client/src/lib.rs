//! Client library for the remoteproxy tunnel broker (and nymea-remoteproxy brokers).
//!
//! Two programs that want to talk but sit behind NAT both connect out to a broker, present the
//! same token (and nonce), and get a byte stream to each other:
//!
//! ```no_run
//! # async fn demo() -> Result<(), remoteproxy_client::ClientError> {
//! use remoteproxy_client::{ClientOptions, Credentials, ProxyUrl, open_tunnel};
//! use tokio::io::AsyncWriteExt;
//!
//! let url = ProxyUrl::parse("ssl://proxy.example.com:1213")?;
//! let credentials = Credentials {
//!     token: "shared-secret".into(),
//!     nonce: Some("session-1".into()),
//!     uuid: "3f2504e0-4f89-11d3-9a0c-0305e82c3301".into(),
//!     name: "device".into(),
//! };
//! let mut tunnel = open_tunnel(&url, &ClientOptions::default(), &credentials).await?;
//! tunnel.stream.write_all(b"hello partner").await?;
//! # Ok(()) }
//! ```
//!
//! * [`url`]: the broker address schemes.
//! * [`options`]: trust, client certificates, timeouts.
//! * [`connection`]: Hello, Authenticate, waiting for the tunnel.
//! * [`stream`]: the tunnel as `AsyncRead + AsyncWrite`.
//! * [`error`]: typed failures.
//! * [`tunnelproxy`]: the v2 TunnelProxy API: [`TunnelServer`] registers under a uuid and accepts
//!   any number of clients over one connection, [`TunnelClient`] reaches it by that uuid.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

/// The command line's definition, in the library so that the package's man page and shell
/// completions are generated from the very flags the binary parses.
pub mod args;
pub mod connect;
pub mod connection;
pub mod error;
pub mod options;
pub mod stream;
pub mod tls;
pub mod tunnelproxy;
pub mod url;

pub use connection::{Credentials, ProxyConnection, ServerInfo, Tunnel, connect, open_tunnel};
pub use error::ClientError;
pub use options::ClientOptions;
pub use remoteproxy_wire::AuthenticationError;
pub use stream::{CloseInfo, TunnelStream};
pub use tunnelproxy::{
    Backoff, IncomingClient, IncomingStream, ServerRegistration, ServerSettings, ServerStatus, TunnelClient,
    TunnelProxyError, TunnelServer,
};
pub use url::ProxyUrl;
