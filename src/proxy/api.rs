//! The v1 proxy API table (PROTOCOL §4): what exists, how params are checked, what `Introspect`
//! says. Descriptions are the reference broker's, so introspection reads the same to clients.

use crate::protocol::api::{ApiSpec, MethodSpec, NotificationSpec, Param, ParamType};
use crate::protocol::types;

/// `apiVersion` in `Hello` (the reference said "5" through a build bug; 0.5 is what it meant).
pub const API_VERSION: &str = "0.5";

/// `server` in `Hello`.
pub const SERVER_NAME: &str = "remoteproxy";

/// The v1 API.
pub static V1_API: ApiSpec = ApiSpec {
    methods: &[
        MethodSpec {
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
        },
        MethodSpec {
            namespace: "RemoteProxy",
            name: "Hello",
            description: "Once connected to this server, a client can get information about the server by saying \
                Hello. The response informs the client about this proxy server.",
            params: &[],
            returns: &[
                Param::required("apiVersion", ParamType::String),
                Param::required("name", ParamType::String),
                Param::required("server", ParamType::String),
                Param::required("version", ParamType::String),
            ],
        },
        MethodSpec {
            namespace: "RemoteProxy",
            name: "Introspect",
            description: "Introspect this API.",
            params: &[],
            returns: &[
                Param::required("methods", ParamType::Object),
                Param::required("notifications", ParamType::Object),
                Param::required("types", ParamType::Object),
            ],
        },
    ],
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
