//! Partial membership on real sockets, shared by `examples/overlay_cluster.rs`
//! and `tests/overlay_udp.rs`: N nodes in one process on 127.0.0.1, each a
//! tokio task with its own UDP socket running rumor-core's HyParView and
//! Plumtree (`rumor_core::overlay`) in rumor's wire format (message types 23
//! and 24). Not the agent: partial membership is not a mode of `Node` yet.

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
                ViewEvent::Failed(_) | ViewEvent::Left(_) => {}
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
pub struct Shape {
    /// Nodes two or more short.
    pub short: usize,
    /// Links one way only.
    pub one_way: usize,
    /// Connected components.
    pub components: usize,
}

impl Shape {
    /// Every view full or one short, every link both ways, one component.
    pub fn whole(&self) -> bool {
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

/// A cluster of overlay nodes on loopback.
pub struct Cluster {
    /// Each node's address, by index.
    pub addrs: Vec<SocketAddr>,
    commands: Vec<mpsc::UnboundedSender<u64>>,
    shared: Arc<Mutex<Shared>>,
    /// When the first node was made.
    pub origin: Instant,
    /// When the last one started.
    pub started: Duration,
    config: ViewConfig,
}

impl Cluster {
    /// Start `n` nodes: one a millisecond, each joining through a random
    /// earlier one, or with `storm` all at once through the first.
    pub async fn start(n: usize, storm: bool, seed: u64) -> std::io::Result<Cluster> {
        let origin = Instant::now();
        let config = ViewConfig::default();
        let shared = Arc::new(Mutex::new(Shared {
            views: vec![Vec::new(); n],
            ..Shared::default()
        }));
        let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(seed);
        let mut addrs = Vec::with_capacity(n);
        let mut commands = Vec::with_capacity(n);
        let mut peers = Vec::with_capacity(n);
        for i in 0..n {
            let socket = UdpSocket::bind("127.0.0.1:0").await?;
            // Buffers as large as the agent asks for: a burst (a join storm
            // at the first node) would otherwise overflow the default.
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
        for (peer, contact, rx) in peers {
            tokio::spawn(peer.run(contact, rx));
            if !storm {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        Ok(Cluster {
            addrs,
            commands,
            shared,
            origin,
            started: origin.elapsed(),
            config,
        })
    }

    fn shared(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The overlay's shape now.
    pub fn shape(&self) -> Shape {
        let views = self.shared().views.clone();
        shape(&views, &self.addrs, self.config.active_size)
    }

    /// Wait until the overlay is whole, at most `limit` after the last
    /// start, calling `report` with its shape each second; when it was.
    pub async fn wait_whole(
        &self,
        limit: Duration,
        mut report: impl FnMut(Duration, &Shape),
    ) -> Option<Duration> {
        let mut last_report = self.started;
        loop {
            tokio::time::sleep(Duration::from_millis(250)).await;
            let now = self.shape();
            if now.whole() {
                return Some(self.origin.elapsed());
            }
            if self.origin.elapsed() >= last_report + Duration::from_secs(1) {
                last_report = self.origin.elapsed();
                report(last_report, &now);
            }
            if self.origin.elapsed() > self.started + limit {
                return None;
            }
        }
    }

    /// Node `from` broadcasts message `id` (64 bytes).
    pub fn broadcast(&self, from: usize, id: u64) {
        if let Some(c) = self.commands.get(from) {
            let _ = c.send(id);
        }
    }

    /// Deliveries of broadcast `id` so far, and the latest one's delay.
    pub fn delivered(&self, id: u64) -> (usize, Duration) {
        self.shared()
            .delivered
            .get(&id)
            .copied()
            .unwrap_or_default()
    }

    /// Datagrams that did not decode or were not overlay messages.
    pub fn bad(&self) -> u64 {
        self.shared().bad
    }
}
