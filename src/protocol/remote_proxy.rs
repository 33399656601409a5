//! The `RemoteProxy` namespace, the same on both APIs: `Hello` and `Introspect`.

use serde_json::{Value, json};

use super::api::{MethodSpec, Param, ParamType};

/// `apiVersion` in `Hello` (the reference said "5" through a build bug; 0.5 is what it meant).
pub const API_VERSION: &str = "0.5";

/// `server` in `Hello`.
pub const SERVER_NAME: &str = "remoteproxy";

/// `RemoteProxy.Hello`.
pub static HELLO: MethodSpec = MethodSpec {
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
};

/// `RemoteProxy.Introspect`.
pub static INTROSPECT: MethodSpec = MethodSpec {
    namespace: "RemoteProxy",
    name: "Introspect",
    description: "Introspect this API.",
    params: &[],
    returns: &[
        Param::required("methods", ParamType::Object),
        Param::required("notifications", ParamType::Object),
        Param::required("types", ParamType::Object),
    ],
};

/// The result of `Hello` for a broker named `name`.
pub fn hello(name: &str) -> Value {
    json!({
        "apiVersion": API_VERSION,
        "name": name,
        "server": SERVER_NAME,
        "version": env!("CARGO_PKG_VERSION"),
    })
}
