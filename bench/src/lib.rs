//! remoteproxy-bench: a benchmark harness for tunnel brokers that speak the nymea-remoteproxy v1
//! API (remoteproxy, or the reference C++ broker), built to compare, not just to count.
//!
//! Every measure runs twice in the same run with the same client: once through the broker, once
//! through a minimal baseline doing the same job, and reports `broker X, baseline Y, ratio X/Y`.
//! On a shared or noisy machine the absolute numbers move; the ratio is what holds.
//!
//! * [`client`]: the lean v1 client both sides are driven with (source-address spreading, one
//!   shared TLS configuration).
//! * [`baseline`]: the baseline server, run as a child process (`baseline-server`), and what it
//!   does exactly.
//! * [`measure`]: `setup`, `throughput`, `latency`, `hold` (v1 tunnels over TCP or WebSocket) and
//!   `fleet` (`hold` of registered v2 TunnelProxy servers, with client reach latency), each
//!   documented in its module; `storm`, the reconnect storm (N v2 servers registering at once,
//!   full and resumed TLS handshakes, a broker restart between, tunnel RTT meanwhile).
//! * [`slip`]: the TunnelProxy server connection's SLIP framing, the bench's own.
//! * [`server`]: a server under test (endpoints, pid, handshake kind).
//! * [`procfs`]: RSS, descriptors and CPU time of a process.
//! * [`stats`]: percentiles (nearest rank), medians, units.
//! * [`goals`]: the targets of issues #7 and #14 as pass/fail checks.
//! * [`results`], [`report`], [`chart`]: the JSON document, markdown tables, SVG chart.
//! * [`cli`]: flags and defaults.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod baseline;
pub mod chart;
pub mod cli;
pub mod client;
pub mod goals;
pub mod measure;
pub mod procfs;
pub mod report;
pub mod results;
pub mod server;
pub mod slip;
pub mod stats;
