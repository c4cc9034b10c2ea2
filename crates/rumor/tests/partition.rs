//! A 5-node cluster on turmoil's simulated network: it converges, is cut
//! in two ({a, b} | {c, d, e}), each side finds the other failed, the
//! network heals and every node sees all five alive again.
//!
//! The nodes run the production driver on [`SimNet`], a [`Transport`] over
//! turmoil's UDP and TCP. Time is simulated (turmoil runs every host's
//! tokio runtime with a paused clock, which the driver reads through
//! `tokio::time::Instant`), so the test takes simulated minutes in a few
//! real seconds, and the network's randomness (latency) and the nodes'
//! random generators have fixed seeds.

mod common;

use std::collections::BTreeMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rumor::{MemberState, Node, Transport};
use turmoil::net::{TcpListener, TcpStream, UdpSocket};

/// The port every node binds.
const PORT: u16 = 7946;

/// The simulated cluster's nodes.
const NAMES: [&str; 5] = ["a", "b", "c", "d", "e"];

/// The turmoil network seen through rumor's [`Transport`].
struct SimNet {
    udp: UdpSocket,
    listener: TcpListener,
}

impl Transport for SimNet {
    type Stream = TcpStream;

    async fn bind(addr: SocketAddr) -> io::Result<Self> {
        let udp = UdpSocket::bind(addr).await?;
        let listener = TcpListener::bind(udp.local_addr()?).await?;
        Ok(SimNet { udp, listener })
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

    async fn send_to(&self, buf: &[u8], to: SocketAddr) -> io::Result<usize> {
        self.udp.send_to(buf, to).await
    }

    async fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        self.listener.accept().await
    }

    async fn connect(to: SocketAddr) -> io::Result<TcpStream> {
        TcpStream::connect(to).await
    }
}

/// Each node's latest view: member name to state.
type Views = Arc<Mutex<BTreeMap<String, BTreeMap<String, MemberState>>>>;

/// The address node `name` is reached at inside the simulation.
fn addr_of(name: &str) -> SocketAddr {
    SocketAddr::new(turmoil::lookup(name), PORT)
}

/// Register node `name` as a simulated host: it starts a node (joining
/// through `a` unless it is `a`) and publishes its view every 100 ms of
/// simulated time.
fn node_host(sim: &mut turmoil::Sim<'_>, name: &'static str, index: u64, views: Views) {
    sim.host(name, move || {
        let views = views.clone();
        async move {
            let mut b = Node::builder()
                .name(name)
                .bind(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), PORT))
                .advertise(addr_of(name))
                .config(common::fast_config())
                .rng_seed(0x5eed_0000 + index)
                .stream_timeout(Duration::from_secs(2))
                .join_timeout(Duration::from_secs(60))
                .metrics_interval(None);
            if name != "a" {
                b = b.seed(addr_of("a"));
            }
            let node = b.start_on::<SimNet>().await?;
            loop {
                let seen = node
                    .members()
                    .await?
                    .into_iter()
                    .map(|m| (m.name.to_string(), m.state))
                    .collect();
                views
                    .lock()
                    .expect("views lock")
                    .insert(name.to_string(), seen);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    });
}

/// Whether `observer` currently sees every one of `names` in `state`.
fn sees(
    views: &BTreeMap<String, BTreeMap<String, MemberState>>,
    observer: &str,
    names: &[&str],
    state: MemberState,
) -> bool {
    views
        .get(observer)
        .is_some_and(|v| names.iter().all(|n| v.get(*n) == Some(&state)))
}

/// Step the simulation until `done` holds for the views; panic naming
/// `what` (with the views) after `limit` of simulated time. Returns the
/// simulated time it took.
fn step_until(
    sim: &mut turmoil::Sim<'_>,
    views: &Views,
    limit: Duration,
    what: &str,
    done: impl Fn(&BTreeMap<String, BTreeMap<String, MemberState>>) -> bool,
) -> Duration {
    let start = sim.elapsed();
    loop {
        if done(&views.lock().expect("views lock")) {
            return sim.elapsed() - start;
        }
        if sim.elapsed() - start > limit {
            panic!(
                "{what}: not after {limit:?} of simulated time; views: {:#?}",
                views.lock().expect("views lock")
            );
        }
        sim.step().expect("simulation step");
    }
}

#[test]
fn five_nodes_partition_and_heal() {
    let mut sim = turmoil::Builder::new()
        .rng_seed(42)
        .tick_duration(Duration::from_millis(1))
        .min_message_latency(Duration::from_millis(1))
        .max_message_latency(Duration::from_millis(20))
        // Hosts with no client: the test steps the simulation itself, and
        // bounds each phase below.
        .simulation_duration(Duration::from_secs(3600))
        .udp_capacity(4096)
        .tcp_capacity(4096)
        .build();
    let views = Views::default();
    for (i, name) in NAMES.iter().enumerate() {
        node_host(&mut sim, name, i as u64, views.clone());
    }
    let (left, right) = (&NAMES[..2], &NAMES[2..]);

    let took = step_until(
        &mut sim,
        &views,
        Duration::from_secs(60),
        "all five see all five alive",
        |v| NAMES.iter().all(|o| sees(v, o, &NAMES, MemberState::Alive)),
    );
    eprintln!("converged after {took:?} of simulated time");

    for l in left {
        for r in right {
            sim.partition(*l, *r);
        }
    }
    let took = step_until(
        &mut sim,
        &views,
        Duration::from_secs(120),
        "each side sees the other side failed and its own side alive",
        |v| {
            left.iter().all(|o| {
                sees(v, o, right, MemberState::Dead) && sees(v, o, left, MemberState::Alive)
            }) && right.iter().all(|o| {
                sees(v, o, left, MemberState::Dead) && sees(v, o, right, MemberState::Alive)
            })
        },
    );
    eprintln!("partition detected after {took:?} of simulated time");

    for l in left {
        for r in right {
            sim.repair(*l, *r);
        }
    }
    let took = step_until(
        &mut sim,
        &views,
        Duration::from_secs(120),
        "after healing, all five see all five alive",
        |v| NAMES.iter().all(|o| sees(v, o, &NAMES, MemberState::Alive)),
    );
    eprintln!("healed after {took:?} of simulated time");
}
