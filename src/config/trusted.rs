//! `[ProxyProtocol] trusted`: the addresses and prefixes allowed to send a PROXY protocol
//! header (`ipnet` parses the prefixes).

use std::net::IpAddr;

use ipnet::IpNet;

/// `[ProxyProtocol] trusted`: who may send a header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trusted(Vec<IpNet>);

impl Trusted {
    /// Parses a comma- or space-separated list of addresses and prefixes (`10.0.0.0/8`,
    /// `192.0.2.7`, `fd00::/8`); the error names the entry that is neither.
    pub fn parse(list: &str) -> Result<Trusted, String> {
        let mut nets = Vec::new();
        for entry in list.split([',', ' ']).map(str::trim).filter(|e| !e.is_empty()) {
            let net = match entry.parse::<IpNet>() {
                Ok(net) => net.trunc(),
                Err(_) => match entry.parse::<IpAddr>() {
                    Ok(ip) => IpNet::from(ip),
                    Err(_) => return Err(entry.to_string()),
                },
            };
            nets.push(net);
        }
        Ok(Trusted(nets))
    }

    /// Whether `ip` may send a header (an IPv4-mapped IPv6 address counts as its IPv4 address).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// Whether the list names nobody.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}
