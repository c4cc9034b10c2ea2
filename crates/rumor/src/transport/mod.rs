//! Sockets: one UDP socket for probes and gossip (`udp`), one TCP
//! listener and short-lived connections for stream messages (`tcp`),
//! behind the [`Transport`] trait so that the same driver runs on the
//! operating system's sockets ([`TokioNet`], what [`Builder::start`]
//! uses) and on a simulated network in tests ([`Builder::start_on`]).
//!
//! [`Builder::start`]: crate::Builder::start
//! [`Builder::start_on`]: crate::Builder::start_on

use std::future::Future;
use std::io;
use std::net::SocketAddr;

use tokio::io::{AsyncRead, AsyncWrite};

pub(crate) mod admission;
pub(crate) mod icmp;
pub(crate) mod sent;
pub(crate) mod tcp;
mod tokio_net;
pub(crate) mod udp;
pub(crate) mod warn;

pub use tokio_net::TokioNet;

/// A "port unreachable" report: who refused, and the head of the datagram
/// refused, as the ICMP error quoted it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// The destination that refused a datagram.
    pub to: SocketAddr,
    /// The head of the refused datagram (envelope included), as quoted.
    pub quoted: Vec<u8>,
}

impl Refusal {
    /// A refusal by `to` of the datagram whose head is `quoted`.
    pub fn new(to: SocketAddr, quoted: Vec<u8>) -> Self {
        Refusal { to, quoted }
    }
}

/// What a node needs from the network: a datagram socket and a stream
/// listener bound to one address, and a way to open streams.
///
/// The node's task owns one value of it and calls it directly (no boxing,
/// no dynamic dispatch), so a production node on [`TokioNet`] pays nothing
/// for the abstraction. Implement it to run nodes on another network, a
/// simulated one in particular (the crate's tests run a cluster on
/// turmoil's simulated hosts this way).
///
/// The futures of `recv_from` and `accept` are raced against each other
/// and dropped unfinished: they must be cancel-safe (dropping one must not
/// lose a datagram or a connection).
pub trait Transport: Send + Sync + Sized + 'static {
    /// A connected stream.
    type Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static;

    /// Bind a datagram socket and a stream listener to `addr`. With port
    /// 0, pick one port for both.
    fn bind(addr: SocketAddr) -> impl Future<Output = io::Result<Self>> + Send;

    /// The address bound (with the port picked).
    fn local_addr(&self) -> io::Result<SocketAddr>;

    /// Wait for the next datagram; returns its length in `buf` and sender.
    fn recv_from(
        &self,
        buf: &mut [u8],
    ) -> impl Future<Output = io::Result<(usize, SocketAddr)>> + Send;

    /// Take a datagram already queued, without waiting (an error, usually
    /// `WouldBlock`, if there is none).
    fn try_recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)>;

    /// Destinations that answered our datagrams with "port unreachable"
    /// since the last call, read after a receive failed, each with the
    /// head of the datagram it refused as the error quoted it (the node
    /// believes only refusals quoting a datagram it sent there).
    /// Transports that cannot tell report none.
    fn take_refused(&self) -> Vec<Refusal> {
        Vec::new()
    }

    /// Send one datagram; returns the bytes sent.
    fn send_to(&self, buf: &[u8], to: SocketAddr)
        -> impl Future<Output = io::Result<usize>> + Send;

    /// Wait for the next incoming stream and its peer's address.
    fn accept(&self) -> impl Future<Output = io::Result<(Self::Stream, SocketAddr)>> + Send;

    /// Open a stream to `to` (the caller bounds the time it may take).
    fn connect(to: SocketAddr) -> impl Future<Output = io::Result<Self::Stream>> + Send;
}
