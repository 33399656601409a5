//! The broker address and connection options from the flags, shared by every mode.

use remoteproxy_client::options::parse_sha256_fingerprint;
use remoteproxy_client::url::{V1_PORTS, V2_PORTS};
use remoteproxy_client::{ClientError, ClientOptions, ProxyUrl};

use crate::cli::args::BrokerArgs;

/// Which API's listeners the defaults point at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// Token pairing.
    V1,
    /// TunnelProxy.
    V2,
}

/// The broker URL (a missing port is the API's default) and the options; warns loudly on stderr
/// when certificate verification is off.
pub fn resolve(flags: &BrokerArgs, api: Api) -> Result<(ProxyUrl, ClientOptions), ClientError> {
    let (tcp, ws) = match api {
        Api::V1 => V1_PORTS,
        Api::V2 => V2_PORTS,
    };
    let default = if flags.ws { format!("wss://127.0.0.1:{ws}") } else { format!("ssl://127.0.0.1:{tcp}") };
    let mut url = ProxyUrl::parse_with_default_ports(flags.url.as_deref().unwrap_or(&default), (tcp, ws))?;
    if flags.ws {
        url = url.into_websocket();
    }
    if flags.ignore_ssl && url.uses_tls() {
        eprintln!(
            "remoteproxy-client: WARNING: --ignore-ssl: the server certificate is not verified; \
             anyone on the path can read and change this tunnel"
        );
    }
    let pinned_sha256 = flags
        .pin
        .iter()
        .map(|pin| parse_sha256_fingerprint(pin))
        .collect::<Result<Vec<_>, _>>()
        .map_err(ClientError::Usage)?;
    let options = ClientOptions {
        ca_file: flags.ca.clone(),
        pinned_sha256,
        insecure_skip_verify: flags.ignore_ssl,
        client_certificate: flags.cert.clone(),
        client_key: flags.key.clone(),
        ..ClientOptions::default()
    };
    Ok((url, options))
}
