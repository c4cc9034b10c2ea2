//! [`TokioNet`]: the operating system's sockets through tokio.

use std::io;
use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpStream, UdpSocket};

use super::{udp, Transport};

/// The production [`Transport`]: a tokio UDP socket and TCP listener on
/// one port (see [`Builder::bind`](crate::Builder::bind)), streams with
/// Nagle's algorithm off.
#[derive(Debug)]
pub struct TokioNet {
    pub(crate) udp: UdpSocket,
    pub(crate) listener: TcpListener,
}

impl Transport for TokioNet {
    type Stream = TcpStream;

    async fn bind(addr: SocketAddr) -> io::Result<Self> {
        let (udp, listener) = udp::bind(addr).await?;
        Ok(TokioNet { udp, listener })
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.udp.local_addr()
    }

    async fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        self.udp.recv_from(buf).await
    }

    fn try_recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        self.udp.try_recv_from(buf)
    }

    fn take_refused(&self) -> Vec<super::Refusal> {
        super::icmp::drain_refused(&self.udp)
    }

    async fn send_to(&self, buf: &[u8], to: SocketAddr) -> io::Result<usize> {
        self.udp.send_to(buf, to).await
    }

    async fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        let (stream, peer) = self.listener.accept().await?;
        let _ = stream.set_nodelay(true);
        Ok((stream, peer))
    }

    async fn connect(to: SocketAddr) -> io::Result<TcpStream> {
        let stream = TcpStream::connect(to).await?;
        let _ = stream.set_nodelay(true);
        Ok(stream)
    }
}
