//! Listening sockets for the proxy and the DNS server: bound before
//! anything is served, so a taken port fails the agent's start with the
//! address named. An IPv6 address listens for IPv6 only, so `[::]:443`
//! and `0.0.0.0:443` can be bound side by side.

use std::net::SocketAddr;

#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr}: {source}")]
pub struct ListenError {
    pub addr: SocketAddr,
    pub source: std::io::Error,
}

/// A bound, non-blocking socket of `kind` on `addr`.
fn socket(addr: SocketAddr, kind: socket2::Type) -> Result<socket2::Socket, ListenError> {
    let err = |source| ListenError { addr, source };
    let s = socket2::Socket::new(socket2::Domain::for_address(addr), kind, None).map_err(err)?;
    if addr.is_ipv6() {
        s.set_only_v6(true).map_err(err)?;
    }
    if kind == socket2::Type::STREAM {
        s.set_reuse_address(true).map_err(err)?;
    }
    s.set_nonblocking(true).map_err(err)?;
    s.bind(&addr.into()).map_err(err)?;
    Ok(s)
}

/// A TCP listener on `addr` (backlog 1024). Needs a Tokio runtime.
pub fn tcp(addr: SocketAddr) -> Result<tokio::net::TcpListener, ListenError> {
    let s = socket(addr, socket2::Type::STREAM)?;
    s.listen(1024)
        .map_err(|source| ListenError { addr, source })?;
    tokio::net::TcpListener::from_std(s.into()).map_err(|source| ListenError { addr, source })
}

/// A UDP socket on `addr`. Needs a Tokio runtime.
pub fn udp(addr: SocketAddr) -> Result<tokio::net::UdpSocket, ListenError> {
    let s = socket(addr, socket2::Type::DGRAM)?;
    tokio::net::UdpSocket::from_std(s.into()).map_err(|source| ListenError { addr, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_taken_port_is_named() {
        let first = tcp("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = first.local_addr().unwrap();
        let e = tcp(addr).unwrap_err();
        assert_eq!(e.addr, addr);
        assert!(
            e.to_string()
                .starts_with(&format!("cannot listen on {addr}: ")),
            "{e}"
        );
        // UDP on the same port is another socket.
        udp(addr).unwrap();
    }
}
