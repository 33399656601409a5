//! The broker's integration tests, one binary: real brokers on 127.0.0.1:0 (in-process through
//! `common`, or the real binary through `binary`), real sockets, real TLS. One module per area;
//! `cargo test --test it <module>::` runs one area.

mod binary;

/// The shared harness, under the name every module uses.
use remoteproxy_testkit as common;

mod api;
mod auth_aws;
mod auth_certificate;
mod auth_http;
mod auth_jwt;
mod auth_static;
mod cli;
mod cluster;
mod half_close;
mod keepalive;
mod lifecycle;
mod limits;
mod listeners;
mod metrics;
mod monitor;
mod pairing;
mod proxy_protocol;
mod reload;
mod rendezvous;
mod resumption;
mod service;
mod statistics;
mod timeouts;
pub(crate) mod tunnelproxy;
mod tunnels;
