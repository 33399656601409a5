//! The JSON dialect shared by both APIs (PROTOCOL §2 and §3).
//!
//! * `decoder`: bytes to JSON values, bounded.
//! * `message`: the request envelope and the response / notification shapes.
//! * `api`: declarative method tables: dispatch checks, params validation, introspection.
//! * `errors`: every refusal with its exact response text and close reason.
//! * `types`: the enums `Introspect` lists.
//! * `remote_proxy`: `Hello` and `Introspect`, shared by both APIs.
//! * [`reasons`]: every close reason, once.
//! * `qt_json`: the Qt indented JSON layout used inside `Invalid params` texts.

pub(crate) mod api;
pub(crate) mod decoder;
pub(crate) mod errors;
pub(crate) mod message;
pub(crate) mod qt_json;
pub mod reasons;
pub(crate) mod remote_proxy;
pub(crate) mod types;

pub(crate) use decoder::{DecodeError, Decoder};
pub(crate) use errors::RpcError;
pub(crate) use message::Request;
