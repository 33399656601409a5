//! The enums listed under `types` by `Introspect` on both APIs (the reference lists all of them
//! on either API).

use remoteproxy_wire::AuthenticationError;

use super::api::EnumSpec;

/// `BasicType`: the names used in params templates.
pub static BASIC_TYPE: EnumSpec = EnumSpec {
    name: "BasicType",
    values: &["Uuid", "String", "Int", "UInt", "Double", "Bool", "Variant", "Object"],
};

/// `AuthenticationError`, in wire order.
pub static AUTHENTICATION_ERROR: EnumSpec = EnumSpec {
    name: "AuthenticationError",
    values: &[
        AuthenticationError::NoError.wire_name(),
        AuthenticationError::Unknown.wire_name(),
        AuthenticationError::Timeout.wire_name(),
        AuthenticationError::Aborted.wire_name(),
        AuthenticationError::AuthenticationFailed.wire_name(),
        AuthenticationError::ProxyError.wire_name(),
    ],
};

/// `TunnelProxyError` of the v2 API, in wire order.
pub static TUNNEL_PROXY_ERROR: EnumSpec = EnumSpec {
    name: "TunnelProxyError",
    values: &[
        "TunnelProxyErrorNoError",
        "TunnelProxyErrorInvalidUuid",
        "TunnelProxyErrorInternalServerError",
        "TunnelProxyErrorServerNotFound",
        "TunnelProxyErrorForbiddenCall",
        "TunnelProxyErrorAlreadyRegistered",
        "TunnelProxyErrorNotRegistered",
        "TunnelProxyErrorUnknownSocketAddress",
    ],
};

/// Every enum, as both APIs list them.
pub static ALL: [&EnumSpec; 3] = [&BASIC_TYPE, &AUTHENTICATION_ERROR, &TUNNEL_PROXY_ERROR];
