//! The probe's stream fallback on real sockets: one node's datagrams are all
//! lost (dropped in a wrapper around the OS transport, both ways), its TCP
//! works. With the fallback (on by default) nobody suspects it, and the
//! others' probes of it are saved by stream pings.

mod common;

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use common::{builder, wait_until};
use rumor::{MemberState, Node, TokioNet, Transport};
use tokio::net::TcpStream;

/// The gossip port whose datagrams are lost (0: none).
static BLACKHOLE: AtomicU16 = AtomicU16::new(0);

fn blocked(a: u16, b: u16) -> bool {
    let port = BLACKHOLE.load(Ordering::Relaxed);
    port != 0 && (a == port || b == port)
}

/// The OS's sockets, except that datagrams to or from [`BLACKHOLE`] vanish.
struct UdpBlackhole(TokioNet);

impl UdpBlackhole {
    fn port(&self) -> u16 {
        self.0.local_addr().map_or(0, |a| a.port())
    }
}

impl Transport for UdpBlackhole {
    type Stream = TcpStream;

    async fn bind(addr: SocketAddr) -> io::Result<Self> {
        Ok(UdpBlackhole(TokioNet::bind(addr).await?))
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.local_addr()
    }

    async fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        loop {
            let (n, from) = self.0.recv_from(buf).await?;
            if !blocked(from.port(), self.port()) {
                return Ok((n, from));
            }
        }
    }

    fn try_recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        loop {
            let (n, from) = self.0.try_recv_from(buf)?;
            if !blocked(from.port(), self.port()) {
                return Ok((n, from));
            }
        }
    }

    async fn send_to(&self, buf: &[u8], to: SocketAddr) -> io::Result<usize> {
        if blocked(to.port(), self.port()) {
            return Ok(buf.len());
        }
        self.0.send_to(buf, to).await
    }

    async fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        self.0.accept().await
    }

    async fn connect(to: SocketAddr) -> io::Result<TcpStream> {
        TokioNet::connect(to).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_udp_is_lost_but_tcp_works_is_not_suspected() {
    let mut nodes: Vec<Node> = Vec::new();
    for name in ["a", "b", "c", "d"] {
        let mut b = builder(name);
        if let Some(first) = nodes.first() {
            b = b.seed(first.local_addr());
        }
        nodes.push(b.start_on::<UdpBlackhole>().await.expect("node starts"));
    }
    wait_until("all four see four alive", || async {
        for n in &nodes {
            let alive = n.members().await.map_or(0, |ms| {
                ms.iter().filter(|m| m.state == MemberState::Alive).count()
            });
            if alive != 4 {
                return false;
            }
        }
        true
    })
    .await;
    let victim = &nodes[3];
    BLACKHOLE.store(victim.local_addr().port(), Ordering::Relaxed);
    // 20 probe intervals of the fast config: each other node probes d
    // about 7 times; without the fallback each probe fails.
    let end = tokio::time::Instant::now() + Duration::from_secs(6);
    while tokio::time::Instant::now() < end {
        for n in &nodes[..3] {
            let d = n.members().await.expect("members");
            let state = d.iter().find(|m| &*m.name == "d").map(|m| m.state);
            assert_eq!(
                state,
                Some(MemberState::Alive),
                "{} sees d {state:?}",
                n.name()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut saved = 0;
    for n in &nodes[..3] {
        saved += n
            .stats()
            .await
            .expect("stats")
            .core
            .probe_stream_fallback_acks;
    }
    BLACKHOLE.store(0, Ordering::Relaxed);
    assert!(saved > 0, "no probe of d was saved by a stream ping");
    for n in nodes {
        n.shutdown().await.expect("shutdown");
    }
}
