//! "Port unreachable" reports from the kernel, so that a crashed process
//! on a live host is told apart from a slow one (Linux only).
//!
//! With `IP_RECVERR` (`IPV6_RECVERR`) set on the UDP socket, an ICMP error
//! answering a datagram we sent is queued on the socket's error queue along
//! with that datagram's destination and the head of its payload as the
//! ICMP message quoted it, and the next receive fails. The driver then
//! drains the queue, checks each quote against what it really sent there
//! ([`super::sent`]: anyone can send us an ICMP error), and hands the
//! refused destinations that pass to the core
//! ([`rumor_core::Node::handle_unreachable`]). Elsewhere this is a no-op.

use tokio::net::UdpSocket;

use super::Refusal;

/// Ask the kernel to queue ICMP errors for this socket. Best effort: a
/// kernel that refuses leaves the node on the Lifeguard timeouts alone.
pub(crate) fn enable(udp: &UdpSocket) {
    #[cfg(target_os = "linux")]
    linux::enable(udp);
    #[cfg(not(target_os = "linux"))]
    let _ = udp;
}

/// Destinations the kernel reported "port unreachable" for since the last
/// call, with the quoted heads (other ICMP errors are drained and ignored).
pub(crate) fn drain_refused(udp: &UdpSocket) -> Vec<Refusal> {
    #[cfg(target_os = "linux")]
    return linux::drain_refused(udp);
    #[cfg(not(target_os = "linux"))]
    {
        let _ = udp;
        Vec::new()
    }
}

#[cfg(target_os = "linux")]
mod linux {
    use std::io::IoSliceMut;
    use std::net::{SocketAddr, SocketAddrV4, SocketAddrV6};
    use std::os::fd::{AsFd, AsRawFd};

    use nix::sys::socket::{
        recvmsg, setsockopt, sockopt, ControlMessageOwned, MsgFlags, SockaddrStorage,
    };
    use tokio::net::UdpSocket;

    use super::super::sent::QUOTE_CHECKED;
    use super::Refusal;

    /// ICMP "destination unreachable" / "port unreachable".
    const ICMP_DEST_UNREACH: u8 = 3;
    const ICMP_PORT_UNREACH: u8 = 3;
    /// ICMPv6 "destination unreachable" / "port unreachable".
    const ICMP6_DST_UNREACH: u8 = 1;
    const ICMP6_DST_UNREACH_NOPORT: u8 = 4;
    /// At most this many queued errors are read per call.
    const MAX_DRAIN: usize = 64;

    pub(super) fn enable(udp: &UdpSocket) {
        let fd = udp.as_fd();
        let ipv6 = udp.local_addr().is_ok_and(|a| a.is_ipv6());
        let result = if ipv6 {
            setsockopt(&fd, sockopt::Ipv6RecvErr, &true)
        } else {
            setsockopt(&fd, sockopt::Ipv4RecvErr, &true)
        };
        if let Err(e) = result {
            tracing::debug!(error = %e, "cannot enable ICMP error reports");
        }
    }

    pub(super) fn drain_refused(udp: &UdpSocket) -> Vec<Refusal> {
        let fd = udp.as_fd().as_raw_fd();
        let mut refused = Vec::new();
        for _ in 0..MAX_DRAIN {
            // The quoted head of the original datagram comes back too.
            let mut head = [0u8; QUOTE_CHECKED];
            let mut iov = [IoSliceMut::new(&mut head)];
            let mut cmsg = nix::cmsg_space!(libc::sock_extended_err, libc::sockaddr_in6);
            let flags = MsgFlags::MSG_ERRQUEUE | MsgFlags::MSG_DONTWAIT;
            let Ok(msg) = recvmsg::<SockaddrStorage>(fd, &mut iov, Some(&mut cmsg), flags) else {
                break; // EAGAIN: the queue is empty
            };
            let quoted_len = msg.bytes.min(QUOTE_CHECKED);
            let Some(to) = msg.address.and_then(|a| socket_addr(&a)) else {
                continue;
            };
            let Ok(cmsgs) = msg.cmsgs() else {
                continue;
            };
            let port_unreachable = cmsgs.into_iter().any(|c| match c {
                ControlMessageOwned::Ipv4RecvErr(e, _) => {
                    e.ee_origin == libc::SO_EE_ORIGIN_ICMP
                        && e.ee_type == ICMP_DEST_UNREACH
                        && e.ee_code == ICMP_PORT_UNREACH
                }
                ControlMessageOwned::Ipv6RecvErr(e, _) => {
                    e.ee_origin == libc::SO_EE_ORIGIN_ICMP6
                        && e.ee_type == ICMP6_DST_UNREACH
                        && e.ee_code == ICMP6_DST_UNREACH_NOPORT
                }
                _ => false,
            });
            if port_unreachable {
                refused.push(Refusal::new(to, head[..quoted_len].to_vec()));
            }
        }
        refused
    }

    fn socket_addr(a: &SockaddrStorage) -> Option<SocketAddr> {
        if let Some(v4) = a.as_sockaddr_in() {
            return Some(SocketAddr::V4(SocketAddrV4::from(*v4)));
        }
        a.as_sockaddr_in6()
            .map(|v6| SocketAddr::V6(SocketAddrV6::from(*v6)))
    }
}
