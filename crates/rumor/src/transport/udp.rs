//! Binding the node's UDP socket and TCP listener on one port.

use std::io;
use std::net::SocketAddr;

use tokio::net::{TcpListener, UdpSocket};

/// Socket buffer size asked for, so bursts of gossip are not dropped.
const SOCKET_BUFFER: usize = 4 << 20;

/// Largest datagram the node reads.
pub(crate) const RECV_BUFFER: usize = 65_536;

/// Bind a UDP socket and a TCP listener to the same address. With port 0
/// the OS picks a UDP port and the listener takes the same one (retried a
/// few times if that TCP port happens to be taken).
pub(crate) async fn bind(addr: SocketAddr) -> io::Result<(UdpSocket, TcpListener)> {
    let mut last = None;
    for _ in 0..16 {
        let udp = UdpSocket::bind(addr).await?;
        enlarge_buffers(&udp);
        super::icmp::enable(&udp);
        let local = udp.local_addr()?;
        match TcpListener::bind(local).await {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(e) if addr.port() == 0 => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::other("could not bind")))
}

/// Ask for larger send and receive buffers; the OS may grant less (or
/// refuse), which only makes bursts likelier to drop, so errors are ignored.
fn enlarge_buffers(udp: &UdpSocket) {
    let sock = socket2::SockRef::from(udp);
    let _ = sock.set_recv_buffer_size(SOCKET_BUFFER);
    let _ = sock.set_send_buffer_size(SOCKET_BUFFER);
}
