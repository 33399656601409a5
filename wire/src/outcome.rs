//! The `tunnelProxyError` enum every TunnelProxy call answers with (PROTOCOL §5). It lives here,
//! with the framing, because the broker and the client both speak it and neither may depend on
//! the other.

use std::fmt;

/// The outcome of a TunnelProxy call. Every result of the v2 API is `status:"success"` with one
/// of these; anything but [`TunnelProxyError::NoError`] is a refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TunnelProxyError {
    /// The call succeeded.
    NoError,
    /// A uuid was the null uuid or could not be parsed. Retrying with the same uuid cannot help.
    InvalidUuid,
    /// The broker failed internally.
    InternalServerError,
    /// No server is registered with the requested `serverUuid`.
    ServerNotFound,
    /// The call is not allowed on this connection (e.g. `DisconnectClient` from a client).
    ForbiddenCall,
    /// The uuid is already registered (maybe by a previous connection of the same program whose
    /// registration has not timed out yet), or this connection registered before.
    AlreadyRegistered,
    /// The call needs a registration first.
    NotRegistered,
    /// `DisconnectClient` named a socket address that has no client.
    UnknownSocketAddress,
}

impl TunnelProxyError {
    /// Every value, in the order of the reference's enum.
    pub const ALL: [TunnelProxyError; 8] = [
        TunnelProxyError::NoError,
        TunnelProxyError::InvalidUuid,
        TunnelProxyError::InternalServerError,
        TunnelProxyError::ServerNotFound,
        TunnelProxyError::ForbiddenCall,
        TunnelProxyError::AlreadyRegistered,
        TunnelProxyError::NotRegistered,
        TunnelProxyError::UnknownSocketAddress,
    ];

    /// The name on the wire, e.g. `TunnelProxyErrorServerNotFound`.
    pub const fn wire_name(self) -> &'static str {
        match self {
            TunnelProxyError::NoError => "TunnelProxyErrorNoError",
            TunnelProxyError::InvalidUuid => "TunnelProxyErrorInvalidUuid",
            TunnelProxyError::InternalServerError => "TunnelProxyErrorInternalServerError",
            TunnelProxyError::ServerNotFound => "TunnelProxyErrorServerNotFound",
            TunnelProxyError::ForbiddenCall => "TunnelProxyErrorForbiddenCall",
            TunnelProxyError::AlreadyRegistered => "TunnelProxyErrorAlreadyRegistered",
            TunnelProxyError::NotRegistered => "TunnelProxyErrorNotRegistered",
            TunnelProxyError::UnknownSocketAddress => "TunnelProxyErrorUnknownSocketAddress",
        }
    }

    /// The value with this wire name.
    pub fn from_wire(name: &str) -> Option<TunnelProxyError> {
        Self::ALL.into_iter().find(|value| value.wire_name() == name)
    }

    /// What the value means for the user, in a few words.
    pub const fn meaning(self) -> &'static str {
        match self {
            TunnelProxyError::NoError => "no error",
            TunnelProxyError::InvalidUuid => "the uuid is not a valid, non-null uuid",
            TunnelProxyError::InternalServerError => "the broker failed internally",
            TunnelProxyError::ServerNotFound => "no server is registered with that uuid",
            TunnelProxyError::ForbiddenCall => "the call is not allowed here",
            TunnelProxyError::AlreadyRegistered => "the uuid is already registered",
            TunnelProxyError::NotRegistered => "the connection is not registered",
            TunnelProxyError::UnknownSocketAddress => "no client has that socket address",
        }
    }
}

impl fmt::Display for TunnelProxyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.wire_name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_names_round_trip() {
        for value in TunnelProxyError::ALL {
            assert_eq!(TunnelProxyError::from_wire(value.wire_name()), Some(value));
            assert!(value.wire_name().starts_with("TunnelProxyError"));
        }
        assert_eq!(TunnelProxyError::from_wire("ServerNotFound"), None);
    }
}
