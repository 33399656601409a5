//! The v1 proxy API table (PROTOCOL §4): what exists, how params are checked, what `Introspect`
//! says. Descriptions are the reference broker's, so introspection reads the same to clients.

use crate::protocol::api::{ApiSpec, MethodSpec, NotificationSpec, Param, ParamType};
use crate::protocol::remote_proxy::{HELLO, INTROSPECT};
use crate::protocol::types;

/// `Authentication.Authenticate`.
pub static AUTHENTICATE: MethodSpec = MethodSpec {
    namespace: "Authentication",
    name: "Authenticate",
    description: "Authenticate this connection. The returned AuthenticationError informs about the result. \
        If the authentication was not successfull, the server will close the connection immediatly after \
        sending the error response. The given id should be a unique id the other tunnel client can \
        understand. Once the authentication was successfull, you can wait for the \
        RemoteProxy.TunnelEstablished notification. If you send any data before getting this notification, \
        the server will close the connection. If the tunnel client does not show up within 10 seconds, the \
        server will close the connection.",
    params: &[
        Param::required("uuid", ParamType::String),
        Param::required("name", ParamType::String),
        Param::required("token", ParamType::String),
        Param::optional("nonce", ParamType::String),
    ],
    returns: &[Param::required("authenticationError", ParamType::Ref(&types::AUTHENTICATION_ERROR))],
};

/// The v1 API.
pub static V1_API: ApiSpec = ApiSpec {
    methods: &[&AUTHENTICATE, &HELLO, &INTROSPECT],
    notifications: &[NotificationSpec {
        namespace: "RemoteProxy",
        name: "TunnelEstablished",
        description: "Emitted whenever the tunnel has been established successfully. This is the last message from \
            the remote proxy server! Any following data will be from the other tunnel client until the connection \
            will be closed. The parameter contain some information about the other tunnel client.",
        params: &[Param::required("name", ParamType::String), Param::required("uuid", ParamType::String)],
    }],
    types: &types::ALL,
};
