//! Where the attacks come from: 127.0.1.x, bound before each connect, so that no attack shares a
//! source address (a per-source limit, a throttle, the PROXY protocol's trust) with the bench
//! client's 127.0.0.2..=254 or with another attack.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use tokio::net::{TcpSocket, TcpStream};

use super::support::bounded;

/// 127.0.1.`host`: where the attacks come from.
pub(super) fn abuser(host: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 1, host))
}

/// A TCP connection from `source` to `addr`.
async fn tcp_from(source: IpAddr, addr: SocketAddr) -> io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(source, 0))?;
    let stream = socket.connect(addr).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// A TCP connection from `source` to `addr` within [`super::STEP`], its error as text.
pub(super) async fn connect_from(source: IpAddr, addr: SocketAddr) -> Result<TcpStream, String> {
    bounded("connect", tcp_from(source, addr)).await
}
