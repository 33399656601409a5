//! The v2 TunnelProxy API table (PROTOCOL §5). Descriptions are the reference broker's.

use serde_json::{Value, json};

use crate::protocol::Request;
use crate::protocol::api::{ApiSpec, MethodSpec, NotificationSpec, Param, ParamType};
use crate::protocol::remote_proxy::{self, HELLO, INTROSPECT};
use crate::protocol::types;

/// The result of the calls that mean the same on every v2 connection, registered or not:
/// `Hello`, `Introspect` and `Ping`. `None` for the others.
pub fn common_answer(method: &MethodSpec, request: &Request, server_name: &str) -> Option<Value> {
    match (method.namespace, method.name) {
        ("RemoteProxy", "Hello") => Some(remote_proxy::hello(server_name)),
        ("RemoteProxy", "Introspect") => Some(V2_API.introspect()),
        ("TunnelProxy", "Ping") => {
            Some(json!({"timestamp": request.params.get("timestamp").cloned().unwrap_or(Value::Null)}))
        }
        _ => None,
    }
}

/// `TunnelProxyError`, shared with the client library.
pub use remoteproxy_wire::TunnelProxyError;

/// `TunnelProxy.DisconnectClient`.
pub static DISCONNECT_CLIENT: MethodSpec = MethodSpec {
    namespace: "TunnelProxy",
    name: "DisconnectClient",
    description: "A registered server can ask the remote proxy connection to disconnect a client for whatever \
        reason.",
    params: &[Param::required("socketAddress", ParamType::UInt)],
    returns: &[Param::required("tunnelProxyError", ParamType::Ref(&types::TUNNEL_PROXY_ERROR))],
};

/// `TunnelProxy.Ping`.
pub static PING: MethodSpec = MethodSpec {
    namespace: "TunnelProxy",
    name: "Ping",
    description: "In order to keep a connection alive when no client is connected, this Ping method can be used. \
        The sent timestamp will be returned as sent in the response for speed measuements on the client side.",
    params: &[Param::required("timestamp", ParamType::UInt)],
    returns: &[Param::required("timestamp", ParamType::UInt)],
};

/// `TunnelProxy.RegisterClient`.
pub static REGISTER_CLIENT: MethodSpec = MethodSpec {
    namespace: "TunnelProxy",
    name: "RegisterClient",
    description: "Register a new TunnelProxy client on TunnelProxy server with the given serverUuid. On success, \
        the remote connection has been accepted and any further data will come from the connected server.",
    params: &[
        Param::required("clientName", ParamType::String),
        Param::required("clientUuid", ParamType::Uuid),
        Param::required("serverUuid", ParamType::Uuid),
    ],
    returns: &[Param::required("tunnelProxyError", ParamType::Ref(&types::TUNNEL_PROXY_ERROR))],
};

/// `TunnelProxy.RegisterServer`.
pub static REGISTER_SERVER: MethodSpec = MethodSpec {
    namespace: "TunnelProxy",
    name: "RegisterServer",
    description: "Register a new TunnelProxy server on this instance. Multiple TunnelProxy clients can be \
        connected to the registered server on success.",
    params: &[
        Param::required("serverName", ParamType::String),
        Param::required("serverUuid", ParamType::Uuid),
    ],
    returns: &[
        Param::required("slipEnabled", ParamType::Bool),
        Param::required("tunnelProxyError", ParamType::Ref(&types::TUNNEL_PROXY_ERROR)),
    ],
};

/// The v2 API: `RemoteProxy.Hello` and `Introspect` as on v1, plus the `TunnelProxy` namespace.
pub static V2_API: ApiSpec = ApiSpec {
    methods: &[&HELLO, &INTROSPECT, &DISCONNECT_CLIENT, &PING, &REGISTER_CLIENT, &REGISTER_SERVER],
    notifications: &[
        NotificationSpec {
            namespace: "TunnelProxy",
            name: "ClientConnected",
            description: "Emitted whenever a new client has been connected to a registered server. Only tunnel proxy \
                clients registered as server will receive this notification. The socket address will be used for \
                framing.",
            params: &[
                Param::required("clientName", ParamType::String),
                Param::required("clientPeerAddress", ParamType::String),
                Param::required("clientUuid", ParamType::String),
                Param::required("socketAddress", ParamType::UInt),
            ],
        },
        NotificationSpec {
            namespace: "TunnelProxy",
            name: "ClientDisconnected",
            description: "Emitted whenever a client has been disconnected from a registered server. Only tunnel \
                proxy clients registered as server will receive this notification.",
            params: &[Param::required("socketAddress", ParamType::UInt)],
        },
    ],
    types: &types::ALL,
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_names_follow_the_enum_order() {
        assert_eq!(TunnelProxyError::NoError.wire_name(), "TunnelProxyErrorNoError");
        assert_eq!(
            TunnelProxyError::UnknownSocketAddress.wire_name(),
            "TunnelProxyErrorUnknownSocketAddress"
        );
        // Introspect lists the enum from the type table; it must be the shared enum, in order.
        let names: Vec<&str> = TunnelProxyError::ALL.iter().map(|e| e.wire_name()).collect();
        assert_eq!(names, types::TUNNEL_PROXY_ERROR.values);
    }

    #[test]
    fn v2_has_no_authentication_namespace() {
        assert!(V2_API.methods.iter().all(|m| m.namespace != "Authentication"));
        assert_eq!(V2_API.methods[0].name, "Hello");
    }
}
