//! The TunnelProxy registration calls, made in the JSON phase of a v2 connection.

use serde_json::{Value, json};

use crate::connection::ProxyConnection;
use crate::error::ClientError;
use crate::tunnelproxy::TunnelProxyError;

impl ProxyConnection {
    /// `TunnelProxy.RegisterServer`: returns the outcome and `slipEnabled`. After `NoError` the
    /// broker speaks SLIP on this connection; anything else but `InvalidUuid` is followed by the
    /// broker closing it.
    pub async fn register_server(
        &mut self,
        server_uuid: &str,
        server_name: &str,
    ) -> Result<(TunnelProxyError, bool), ClientError> {
        let params = json!({"serverName": server_name, "serverUuid": server_uuid});
        let result = self.call("TunnelProxy.RegisterServer", params).await?;
        let slip = result.get("slipEnabled").and_then(Value::as_bool).unwrap_or(false);
        Ok((outcome(&result)?, slip))
    }

    /// `TunnelProxy.RegisterClient`: after `NoError` the connection is a raw pipe to the server.
    pub async fn register_client(
        &mut self,
        client_uuid: &str,
        client_name: &str,
        server_uuid: &str,
    ) -> Result<TunnelProxyError, ClientError> {
        let params = json!({"clientName": client_name, "clientUuid": client_uuid, "serverUuid": server_uuid});
        let result = self.call("TunnelProxy.RegisterClient", params).await?;
        outcome(&result)
    }
}

/// The `tunnelProxyError` of a result.
pub(crate) fn outcome(result: &Value) -> Result<TunnelProxyError, ClientError> {
    let wire = result.get("tunnelProxyError").and_then(Value::as_str).unwrap_or_default();
    TunnelProxyError::from_wire(wire)
        .ok_or_else(|| ClientError::Protocol(format!("unknown tunnelProxyError '{wire}'")))
}
