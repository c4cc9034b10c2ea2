//! Partial membership on real sockets: N nodes in one process on
//! 127.0.0.1, each a tokio task with its own UDP socket running rumor-core's
//! HyParView overlay and Plumtree broadcast trees (`rumor_core::overlay`,
//! messages in rumor's wire format, types 23 and 24). Not yet the agent's
//! `membership = "partial"` mode: the overlay is driven here directly.
//!
//! ```text
//! cargo run --release -p rumor --example overlay_cluster -- N [BROADCASTS] [storm]
//! ```
//!
//! Nodes join over N ms, each through a random node started before it;
//! with `storm`, every node joins the first at once (a cold start).
//! Reported: the time until the overlay is whole (every node's active view
//! full or one short, every link both ways, one component), then for each
//! broadcast from a random node the nodes it reached and the time of its
//! last delivery; the process's memory and CPU per node.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rumor_core::codec;
use rumor_core::message::Message;
use rumor_core::overlay::hyparview::{HyParView, ViewConfig, ViewEvent};
use rumor_core::overlay::plumtree::{Plumtree, TreeConfig};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

/// What the main task can see of every node.
#[derive(Default)]
struct Shared {
    /// Each node's active view, as of its last change.
    views: Vec<Vec<SocketAddr>>,
    /// Per broadcast id: deliveries, and the latest delivery's delay.
    delivered: HashMap<u64, (usize, Duration)>,
    /// Datagrams that did not decode or were not overlay messages.
    bad: u64,
}

/// Wall-clock time since `origin` as the core's instant.
fn core_now(origin: Instant) -> rumor_core::Instant {
    rumor_core::Instant::from_micros(origin.elapsed().as_micros() as u64)
}

struct Peer {
    index: usize,
    socket: UdpSocket,
    view: HyParView<SocketAddr>,
    tree: Plumtree<SocketAddr, Vec<u8>>,
    shared: Arc<Mutex<Shared>>,
    origin: Instant,
}

impl Peer {
    /// Send what the state machines want sent, pass view changes to the
    /// tree, and record deliveries.
    async fn flush(&mut self) {
        let mut changed = false;
        while let Some(ev) = self.view.poll_event() {
            changed = true;
            match ev {
                ViewEvent::NeighborUp(p) => self.tree.neighbor_up(p),
                ViewEvent::NeighborDown(p) => self.tree.neighbor_down(&p),
                ViewEvent::Failed(_) => {}
            }
        }
        let mut out = Vec::new();
        while let Some((to, m)) = self.view.poll_transmit() {
            out.push((to, Message::View(m)));
        }
        while let Some((to, m)) = self.tree.poll_transmit() {
            out.push((to, Message::Tree(m)));
        }
        for (to, m) in out {
            // Loopback: a full socket buffer drops, like a lossy link.
            let _ = self.socket.send_to(&codec::encode_packet(&m), to).await;
        }
        let mut shared = self.shared.lock().unwrap_or_else(|e| e.into_inner());
        if changed {
            shared.views[self.index] = self.view.active().copied().collect();
        }
        while let Some(d) = self.tree.poll_delivered() {
            let sent = d
                .payload
                .get(..8)
                .and_then(|b| b.try_into().ok())
                .map(u64::from_le_bytes)
                .unwrap_or(0);
            let delay = self
                .origin
                .elapsed()
                .saturating_sub(Duration::from_micros(sent));
            let e = shared.delivered.entry(d.id).or_default();
            e.0 += 1;
            e.1 = e.1.max(delay);
        }
    }

    async fn run(
        mut self,
        contact: Option<SocketAddr>,
        mut commands: mpsc::UnboundedReceiver<u64>,
    ) {
        if let Some(c) = contact {
            self.view.join(core_now(self.origin), &[c]);
        }
        self.flush().await;
        let mut buf = vec![0u8; 65536];
        loop {
            let due = self.view.poll_timeout();
            let due = self.tree.poll_timeout().map_or(due, |t| t.min(due));
            let wait = Duration::from_micros(due.as_micros()).saturating_sub(self.origin.elapsed());
            tokio::select! {
                got = self.socket.recv_from(&mut buf) => {
                    let Ok((n, from)) = got else { continue };
                    let now = core_now(self.origin);
                    match codec::decode(&buf[..n]) {
                        Ok(d) => for m in d.messages {
                            match m {
                                Message::View(m) => self.view.handle(now, from, m),
                                Message::Tree(m) => {
                                    self.view.heard(now, &from);
                                    self.tree.handle(now, from, m);
                                }
                                _ => self.shared.lock().unwrap_or_else(|e| e.into_inner()).bad += 1,
                            }
                        },
                        Err(_) => self.shared.lock().unwrap_or_else(|e| e.into_inner()).bad += 1,
                    }
                }
                _ = tokio::time::sleep(wait) => {
                    let now = core_now(self.origin);
                    self.view.handle_timeout(now);
                    self.tree.handle_timeout(now);
                }
                id = commands.recv() => {
                    let Some(id) = id else { return };
                    let sent = self.origin.elapsed().as_micros() as u64;
                    let mut payload = sent.to_le_bytes().to_vec();
                    payload.extend_from_slice(&[0u8; 56]);
                    self.tree.broadcast(core_now(self.origin), id, payload);
                }
            }
            self.flush().await;
        }
    }
}

/// How far the overlay is from whole: nodes two or more short, one-way
/// links, and connected components.
#[derive(Debug, PartialEq, Eq)]
struct Shape {
    short: usize,
    one_way: usize,
    components: usize,
}

impl Shape {
    fn whole(&self) -> bool {
        self.short == 0 && self.one_way == 0 && self.components == 1
    }
}

fn shape(views: &[Vec<SocketAddr>], addrs: &[SocketAddr], size: usize) -> Shape {
    let index: HashMap<SocketAddr, usize> =
        addrs.iter().enumerate().map(|(i, a)| (*a, i)).collect();
    let n = views.len();
    let mut shape = Shape {
        short: 0,
        one_way: 0,
        components: 0,
    };
    for (i, v) in views.iter().enumerate() {
        if v.len() + 1 < size.min(n) {
            shape.short += 1;
        }
        for p in v {
            if !index.get(p).is_some_and(|&j| views[j].contains(&addrs[i])) {
                shape.one_way += 1;
            }
        }
    }
    let mut seen = vec![false; n];
    for start in 0..n {
        if seen[start] {
            continue;
        }
        shape.components += 1;
        seen[start] = true;
        let mut stack = vec![start];
        while let Some(i) = stack.pop() {
            for j in views[i].iter().filter_map(|p| index.get(p)) {
                if !seen[*j] {
                    seen[*j] = true;
                    stack.push(*j);
                }
            }
        }
    }
    shape
}

fn status_mib(key: &str) -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<f64> = rest
        .split_whitespace()
        .map(|v| v.parse().unwrap_or(0.0))
        .collect();
    (f.get(11).unwrap_or(&0.0) + f.get(12).unwrap_or(&0.0)) / 100.0
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let n: usize = match args.next().map(|a| a.parse()) {
        Some(Ok(n)) if n >= 2 => n,
        _ => return Err("usage: overlay_cluster N [BROADCASTS] (N >= 2)".into()),
    };
    let broadcasts: u64 = match args.next().map(|a| a.parse()) {
        None => 10,
        Some(Ok(b)) => b,
        Some(Err(e)) => return Err(format!("BROADCASTS: {e}").into()),
    };
    let storm = match args.next().as_deref() {
        None => false,
        Some("storm") => true,
        Some(other) => return Err(format!("unknown mode {other:?}: expected storm").into()),
    };
    let origin = Instant::now();
    let config = ViewConfig::default();
    let shared = Arc::new(Mutex::new(Shared {
        views: vec![Vec::new(); n],
        ..Shared::default()
    }));
    let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(1);
    let mut addrs = Vec::with_capacity(n);
    let mut commands = Vec::with_capacity(n);
    let mut peers = Vec::with_capacity(n);
    let cpu0 = cpu_seconds();
    for i in 0..n {
        let socket = UdpSocket::bind("127.0.0.1:0").await?;
        // Buffers as large as the agent asks for: a burst (a join storm at
        // the first node) would otherwise overflow the default.
        let sock = socket2::SockRef::from(&socket);
        let _ = sock.set_recv_buffer_size(4 << 20);
        let _ = sock.set_send_buffer_size(4 << 20);
        let addr = socket.local_addr()?;
        let contact = match i {
            0 => None,
            _ if storm => Some(addrs[0]),
            _ => Some(addrs[rng.random_range(0..i)]),
        };
        addrs.push(addr);
        let (tx, rx) = mpsc::unbounded_channel();
        commands.push(tx);
        let peer = Peer {
            index: i,
            socket,
            view: HyParView::new(addr, config.clone(), rng.random(), core_now(origin)),
            tree: Plumtree::new(TreeConfig::default()),
            shared: shared.clone(),
            origin,
        };
        peers.push((peer, contact, rx));
    }
    // In a storm every node starts at once; otherwise one a millisecond.
    for (peer, contact, rx) in peers {
        tokio::spawn(peer.run(contact, rx));
        if !storm {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    let started = origin.elapsed();
    println!("{n} nodes started in {:.1} s", started.as_secs_f64());
    let mut last_report = started;
    let whole_at = loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let views = shared
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .views
            .clone();
        let now = shape(&views, &addrs, config.active_size);
        if now.whole() {
            break origin.elapsed();
        }
        if origin.elapsed() >= last_report + Duration::from_secs(1) {
            last_report = origin.elapsed();
            println!("  {:.0} s: {now:?}", last_report.as_secs_f64());
        }
        if origin.elapsed() > started + Duration::from_secs(120) {
            return Err("the overlay was not whole 120 s after the last start".into());
        }
    };
    println!(
        "overlay whole {:.1} s after the last start ({:.1} s after the first)",
        (whole_at - started).as_secs_f64(),
        whole_at.as_secs_f64()
    );
    let mut worst = Duration::ZERO;
    let mut all_reached = true;
    for k in 0..broadcasts {
        let from = rng.random_range(0..n);
        let _ = commands[from].send(k);
        tokio::time::sleep(Duration::from_secs(2)).await;
        let (reached, last) = shared
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .delivered
            .get(&k)
            .copied()
            .unwrap_or_default();
        println!(
            "broadcast {k} from node {from}: reached {reached}/{n}, last delivery after {:.0} ms",
            last.as_secs_f64() * 1000.0
        );
        all_reached &= reached == n;
        worst = worst.max(last);
    }
    let cpu = cpu_seconds() - cpu0;
    let wall = origin.elapsed().as_secs_f64();
    let bad = shared.lock().unwrap_or_else(|e| e.into_inner()).bad;
    println!(
        "every broadcast reached all {n}: {all_reached}; slowest last delivery {:.0} ms",
        worst.as_secs_f64() * 1000.0
    );
    println!(
        "peak RSS {:.0} MiB ({:.1} KiB per node); CPU {:.1} s over {:.1} s ({:.2} ms per node per s); undecodable datagrams {bad}",
        status_mib("VmHWM:"),
        status_mib("VmHWM:") * 1024.0 / n as f64,
        cpu,
        wall,
        cpu * 1000.0 / wall / n as f64
    );
    Ok(())
}
