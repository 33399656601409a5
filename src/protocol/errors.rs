//! The errors of the JSON-RPC dialect, with their exact response texts and close reasons.
//!
//! Clients in the field match on these strings, so they are kept byte for byte as the reference
//! broker sends them (PROTOCOL §3), including its spelling slips ("timeouted", the doubled quote
//! in the method error).

use std::fmt;

/// A request the broker refuses. Every one is answered (except an oversized buffer) and then the
/// connection is closed with [`RpcError::close_reason`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RpcError {
    /// The bytes are not JSON.
    InvalidJson(String),
    /// The message has no integer or numeric-string `id`.
    MissingId,
    /// `method` is not of the form `Namespace.Method`.
    InvalidMethod {
        id: i64,
        /// The method text as received.
        got: String,
    },
    /// The namespace does not exist on this API.
    NoSuchNamespace { id: i64 },
    /// The namespace exists but has no such method.
    NoSuchMethod { id: i64 },
    /// The params do not match the method's template.
    InvalidParams {
        id: i64,
        /// What is wrong, in the reference's words.
        detail: String,
    },
    /// An asynchronous call was not answered within `jsonRpcTimeout`.
    Timeout { id: i64 },
    /// An incomplete message grew past `maxMessageSize`. Not answered, only closed.
    BufferOverflow,
}

impl RpcError {
    /// The id to echo in the error response.
    pub fn id(&self) -> i64 {
        match self {
            RpcError::InvalidJson(_) | RpcError::MissingId | RpcError::BufferOverflow => -1,
            RpcError::InvalidMethod { id, .. }
            | RpcError::NoSuchNamespace { id }
            | RpcError::NoSuchMethod { id }
            | RpcError::InvalidParams { id, .. }
            | RpcError::Timeout { id } => *id,
        }
    }

    /// The `error` text of the response, or `None` when the broker closes without answering.
    pub fn response_text(&self) -> Option<String> {
        Some(match self {
            RpcError::InvalidJson(message) => format!("Failed to parse JSON data: {message}"),
            RpcError::MissingId => "Error parsing command. Missing 'id'".to_string(),
            RpcError::InvalidMethod { got, .. } => {
                format!("Error parsing method. Got: '{got}'', Expected: 'Namespace.method'")
            }
            RpcError::NoSuchNamespace { .. } => "No such namespace".to_string(),
            RpcError::NoSuchMethod { .. } => "No such method".to_string(),
            RpcError::InvalidParams { detail, .. } => format!("Invalid params: {detail}"),
            RpcError::Timeout { .. } => "Command timed out".to_string(),
            RpcError::BufferOverflow => return None,
        })
    }

    /// The reason given when closing (the WebSocket close reason; a log line on other transports).
    pub fn close_reason(&self) -> &'static str {
        match self {
            RpcError::InvalidJson(_) => "Invalid JSON data received.",
            RpcError::MissingId => "The id property is missing in the request.",
            RpcError::InvalidMethod { .. } => "Invalid method passed.",
            RpcError::NoSuchNamespace { .. } => "No such namespace.",
            RpcError::NoSuchMethod { .. } => "No such method.",
            RpcError::InvalidParams { .. } => "Invalid params passed.",
            RpcError::Timeout { .. } => "API call timeouted.",
            RpcError::BufferOverflow => "Data buffer size violation.",
        }
    }
}

impl fmt::Display for RpcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.close_reason())
    }
}
