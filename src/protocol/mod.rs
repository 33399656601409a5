//! The JSON-RPC dialect shared by both APIs (PROTOCOL §2 and §3).
//!
//! * [`decoder`]: bytes to JSON values, bounded.
//! * [`message`]: the request envelope and the response / notification shapes.
//! * [`api`]: declarative method tables: dispatch checks, params validation, introspection.
//! * [`errors`]: every refusal with its exact response text and close reason.
//! * [`types`]: the enums `Introspect` lists.
//! * [`remote_proxy`]: `Hello` and `Introspect`, shared by both APIs.
//! * [`reasons`]: every close reason, once.
//! * [`qt_json`]: the Qt indented JSON layout used inside `Invalid params` texts.

pub mod api;
pub mod decoder;
pub mod errors;
pub mod message;
pub mod qt_json;
pub mod reasons;
pub mod remote_proxy;
pub mod types;

pub use api::{ApiSpec, MethodSpec, Param, ParamType};
pub use decoder::{DecodeError, Decoder};
pub use errors::RpcError;
pub use message::Request;
