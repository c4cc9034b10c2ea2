//! A minimal tokio driver of `rumor_core::Node`, standing in for the
//! networked `rumor` library until it lands.
//!
//! Datagrams go over one UDP socket; stream messages (push-pull) over TCP,
//! one length-prefixed frame each way per connection. No encryption, no
//! compression, no label: the keyring is kept (so the API can be exercised)
//! but not used on the wire. Replace with `rumor::Node` behind [`super::Cluster`].

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};
use rumor_core::{Config, Event, Instant, Member, Node, Stats, Tags, Transmit};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{broadcast, oneshot, watch, Notify};
use tokio::task::JoinHandle;

use super::{
    normalize_key, BoxFuture, Cluster, ClusterError, KeyringView, MemberEvent, NodeSettings,
};

/// Longest a stream exchange may take.
const STREAM_TIMEOUT: Duration = Duration::from_secs(5);

struct Inner {
    node: Mutex<Node>,
    origin: std::time::Instant,
    udp: UdpSocket,
    events: broadcast::Sender<MemberEvent>,
    wake: Notify,
    paused: AtomicBool,
    closed: AtomicBool,
    leave_done: watch::Sender<bool>,
    /// Joins waiting for the answer of a seed.
    pending_joins: Mutex<HashMap<SocketAddr, Vec<oneshot::Sender<bool>>>>,
    keys: Mutex<Vec<String>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

/// A running node driven by this module.
pub struct CoreNode {
    inner: Arc<Inner>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Inner {
    fn now(&self) -> Instant {
        Instant::from_micros(self.origin.elapsed().as_micros() as u64)
    }

    /// Drain what the node wants sent and reported; send datagrams, spawn streams.
    fn flush(self: &Arc<Self>, node: &mut Node) -> Vec<Transmit> {
        let mut out = Vec::new();
        while let Some(t) = node.poll_transmit() {
            out.push(t);
        }
        while let Some(ev) = node.poll_event() {
            match ev {
                Event::Member { kind, member } => {
                    let _ = self.events.send(MemberEvent {
                        kind,
                        member,
                        at: SystemTime::now(),
                    });
                }
                Event::LeaveComplete => {
                    let _ = self.leave_done.send(true);
                }
                _ => {}
            }
        }
        out
    }

    /// Send datagrams now (UDP sends do not block in practice; one that
    /// would is dropped, as a full buffer would) and spawn stream exchanges.
    fn send_all(self: &Arc<Self>, transmits: Vec<Transmit>) {
        for t in transmits {
            if self.paused.load(Ordering::Relaxed) || self.closed.load(Ordering::Relaxed) {
                return;
            }
            if t.is_stream() {
                let inner = self.clone();
                tokio::spawn(async move { inner.stream_out(t.to, t.payload).await });
            } else if let Err(e) = self.udp.try_send_to(&t.payload, t.to) {
                tracing::debug!(to = %t.to, "udp send failed: {e}");
            }
        }
    }

    async fn stream_out(self: Arc<Self>, to: SocketAddr, payload: Vec<u8>) {
        let result = tokio::time::timeout(STREAM_TIMEOUT, async {
            let mut s = TcpStream::connect(to).await?;
            write_frame(&mut s, &payload).await?;
            read_frame(&mut s).await
        })
        .await;
        let ok = match result {
            Ok(Ok(Some(reply))) => {
                if !self.paused.load(Ordering::Relaxed) {
                    let transmits = {
                        let mut node = lock(&self.node);
                        let now = self.now();
                        node.handle_stream(now, to, &reply);
                        self.flush(&mut node)
                    };
                    self.send_all(transmits);
                    self.wake.notify_one();
                }
                true
            }
            Ok(Ok(None)) => true,
            Ok(Err(e)) => {
                tracing::debug!(%to, "stream failed: {e}");
                false
            }
            Err(_) => {
                tracing::debug!(%to, "stream timed out");
                false
            }
        };
        if let Some(waiters) = lock(&self.pending_joins).remove(&to) {
            for w in waiters {
                let _ = w.send(ok);
            }
        }
    }

    async fn timer_loop(self: Arc<Self>) {
        loop {
            if self.closed.load(Ordering::Relaxed) {
                return;
            }
            let next = if self.paused.load(Ordering::Relaxed) {
                Some(Duration::from_millis(50))
            } else {
                let (transmits, next) = {
                    let mut node = lock(&self.node);
                    let now = self.now();
                    node.handle_timeout(now);
                    let t = self.flush(&mut node);
                    (t, node.poll_timeout().map(|at| at.saturating_since(now)))
                };
                self.send_all(transmits);
                next
            };
            let wait = next
                .unwrap_or(Duration::from_secs(1))
                .max(Duration::from_millis(1));
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.wake.notified() => {}
            }
        }
    }

    async fn udp_loop(self: Arc<Self>) {
        let mut buf = vec![0u8; 65_536];
        loop {
            let (n, from) = match self.udp.recv_from(&mut buf).await {
                Ok(x) => x,
                Err(e) => {
                    tracing::debug!("udp receive failed: {e}");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            };
            if self.paused.load(Ordering::Relaxed) {
                continue;
            }
            let transmits = {
                let mut node = lock(&self.node);
                let now = self.now();
                node.handle_datagram(now, from, &buf[..n]);
                self.flush(&mut node)
            };
            self.send_all(transmits);
            self.wake.notify_one();
        }
    }

    async fn tcp_loop(self: Arc<Self>, listener: TcpListener) {
        loop {
            let Ok((mut s, from)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            };
            let inner = self.clone();
            tokio::spawn(async move {
                let _ = tokio::time::timeout(STREAM_TIMEOUT, async {
                    let Ok(Some(req)) = read_frame(&mut s).await else {
                        return;
                    };
                    if inner.paused.load(Ordering::Relaxed) {
                        return;
                    }
                    let (reply, transmits) = {
                        let mut node = lock(&inner.node);
                        let now = inner.now();
                        let reply = node.handle_stream(now, from, &req);
                        (reply, inner.flush(&mut node))
                    };
                    if let Some(r) = reply {
                        let _ = write_frame(&mut s, &r).await;
                    }
                    inner.send_all(transmits);
                    inner.wake.notify_one();
                })
                .await;
            });
        }
    }
}

async fn write_frame(s: &mut TcpStream, bytes: &[u8]) -> std::io::Result<()> {
    let len = u32::try_from(bytes.len())
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "frame too large"))?;
    s.write_all(&len.to_be_bytes()).await?;
    s.write_all(bytes).await?;
    s.flush().await
}

async fn read_frame(s: &mut TcpStream) -> std::io::Result<Option<Vec<u8>>> {
    let mut len = [0u8; 4];
    match s.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > 16 << 20 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "frame too large",
        ));
    }
    let mut buf = vec![0u8; len];
    s.read_exact(&mut buf).await?;
    Ok(Some(buf))
}

/// The address to advertise when bound to an unspecified IP: the source
/// address of the default route, else loopback.
fn guess_advertise(bind: SocketAddr) -> SocketAddr {
    if !bind.ip().is_unspecified() {
        return bind;
    }
    let ip = std::net::UdpSocket::bind("0.0.0.0:0")
        .and_then(|s| {
            s.connect("192.0.2.1:9")?;
            s.local_addr()
        })
        .map(|a| a.ip())
        .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
    SocketAddr::new(ip, bind.port())
}

impl CoreNode {
    /// Bind the sockets and start the node (it joins nobody yet).
    pub async fn start(settings: NodeSettings) -> Result<Self> {
        let udp = UdpSocket::bind(settings.bind)
            .await
            .with_context(|| format!("cannot bind UDP {}", settings.bind))?;
        let bound = udp.local_addr().context("UDP socket has no address")?;
        let tcp = TcpListener::bind(bound)
            .await
            .with_context(|| format!("cannot bind TCP {bound}"))?;
        let advertise = settings.advertise.unwrap_or_else(|| guess_advertise(bound));
        let config = Config::profile(settings.profile);
        let seed = u64::from_le_bytes(
            *SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos()
                .to_le_bytes()
                .first_chunk::<8>()
                .unwrap_or(&[7; 8]),
        ) ^ u64::from(bound.port());
        let mut node = Node::new(&settings.name, advertise, config, seed)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let mut keys = Vec::new();
        for k in &settings.keys {
            keys.push(normalize_key(k).map_err(|e| anyhow::anyhow!("keyring: {e}"))?);
        }
        if settings.label.is_some() {
            tracing::warn!(
                "--label is not enforced by this build's transport (no label framing yet)"
            );
        }
        if let Some(inc) = settings.last_incarnation {
            // The core has no way to start at a given incarnation: it learns
            // its old one from the cluster at join and refutes above it.
            tracing::info!(
                incarnation = inc,
                "previous incarnation from the snapshot (recorded only)"
            );
        }
        let origin = std::time::Instant::now();
        if !settings.tags.is_empty() {
            node.set_tags(Instant::ZERO, settings.tags.clone())
                .map_err(|e| anyhow::anyhow!("tags: {e}"))?;
        }
        let (events, _) = broadcast::channel(4096);
        let (leave_done, _) = watch::channel(false);
        let inner = Arc::new(Inner {
            node: Mutex::new(node),
            origin,
            udp,
            events,
            wake: Notify::new(),
            paused: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            leave_done,
            pending_joins: Mutex::new(HashMap::new()),
            keys: Mutex::new(keys),
            tasks: Mutex::new(Vec::new()),
        });
        let tasks = vec![
            tokio::spawn(inner.clone().timer_loop()),
            tokio::spawn(inner.clone().udp_loop()),
            tokio::spawn(inner.clone().tcp_loop(tcp)),
        ];
        *lock(&inner.tasks) = tasks;
        Ok(CoreNode { inner })
    }
}

impl Cluster for CoreNode {
    fn local(&self) -> Member {
        lock(&self.inner.node).local()
    }

    fn members(&self) -> Vec<Member> {
        lock(&self.inner.node).members().collect()
    }

    fn subscribe(&self) -> broadcast::Receiver<MemberEvent> {
        self.inner.events.subscribe()
    }

    fn awareness(&self) -> u32 {
        lock(&self.inner.node).awareness()
    }

    fn stats(&self) -> Stats {
        lock(&self.inner.node).stats().clone()
    }

    fn set_tags(&self, tags: Tags) -> Result<(), ClusterError> {
        let mut node = lock(&self.inner.node);
        let now = self.inner.now();
        node.set_tags(now, tags)
            .map_err(|e| ClusterError::Invalid(e.to_string()))?;
        drop(node);
        self.inner.wake.notify_one();
        Ok(())
    }

    fn join(&self, seeds: Vec<SocketAddr>) -> BoxFuture<'_, Result<usize, ClusterError>> {
        Box::pin(async move {
            if self.inner.closed.load(Ordering::Relaxed) {
                return Err(ClusterError::Closed);
            }
            let own = self.local().addr;
            let seeds: Vec<SocketAddr> = seeds.into_iter().filter(|s| *s != own).collect();
            let mut waits = Vec::new();
            {
                let mut pending = lock(&self.inner.pending_joins);
                for s in &seeds {
                    let (tx, rx) = oneshot::channel();
                    pending.entry(*s).or_default().push(tx);
                    waits.push(rx);
                }
            }
            let transmits = {
                let mut node = lock(&self.inner.node);
                let now = self.inner.now();
                node.join(now, &seeds);
                self.inner.flush(&mut node)
            };
            self.inner.send_all(transmits);
            self.inner.wake.notify_one();
            let mut ok = 0;
            for w in waits {
                if let Ok(Ok(true)) = tokio::time::timeout(STREAM_TIMEOUT * 2, w).await {
                    ok += 1;
                }
            }
            if ok == 0 && !seeds.is_empty() {
                let list: Vec<String> = seeds.iter().map(ToString::to_string).collect();
                return Err(ClusterError::Unreachable(format!(
                    "no seed answered: {}",
                    list.join(", ")
                )));
            }
            Ok(ok)
        })
    }

    fn leave(&self, timeout: Duration) -> BoxFuture<'_, Result<(), ClusterError>> {
        Box::pin(async move {
            let mut done = self.inner.leave_done.subscribe();
            let transmits = {
                let mut node = lock(&self.inner.node);
                let now = self.inner.now();
                node.leave(now);
                self.inner.flush(&mut node)
            };
            self.inner.send_all(transmits);
            self.inner.wake.notify_one();
            let _ = tokio::time::timeout(timeout, done.wait_for(|d| *d)).await;
            Ok(())
        })
    }

    fn shutdown(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            self.inner.closed.store(true, Ordering::Relaxed);
            for t in lock(&self.inner.tasks).drain(..) {
                t.abort();
            }
        })
    }

    fn user_event(&self, _name: &str, _payload: &[u8]) -> Result<(), ClusterError> {
        Err(ClusterError::Unsupported(
            "user events are not implemented yet: the protocol core has no user-event broadcast"
                .into(),
        ))
    }

    fn keys(&self) -> Result<KeyringView, ClusterError> {
        let keys = lock(&self.inner.keys).clone();
        Ok(KeyringView {
            primary: keys.first().cloned(),
            keys,
        })
    }

    fn install_key(&self, key: &str) -> Result<(), ClusterError> {
        let key = normalize_key(key)?;
        let mut keys = lock(&self.inner.keys);
        if !keys.contains(&key) {
            keys.push(key);
        }
        Ok(())
    }

    fn use_key(&self, key: &str) -> Result<(), ClusterError> {
        let key = normalize_key(key)?;
        let mut keys = lock(&self.inner.keys);
        let Some(i) = keys.iter().position(|k| *k == key) else {
            return Err(ClusterError::NotFound("that key is not installed".into()));
        };
        let k = keys.remove(i);
        keys.insert(0, k);
        Ok(())
    }

    fn remove_key(&self, key: &str) -> Result<(), ClusterError> {
        let key = normalize_key(key)?;
        let mut keys = lock(&self.inner.keys);
        match keys.iter().position(|k| *k == key) {
            None => Err(ClusterError::NotFound("that key is not installed".into())),
            Some(0) => Err(ClusterError::Invalid(
                "cannot remove the primary key: make another key primary first".into(),
            )),
            Some(i) => {
                keys.remove(i);
                Ok(())
            }
        }
    }

    fn set_paused(&self, paused: bool) -> Result<(), ClusterError> {
        self.inner.paused.store(paused, Ordering::Relaxed);
        self.inner.wake.notify_one();
        Ok(())
    }
}

impl Drop for CoreNode {
    fn drop(&mut self) {
        self.inner.closed.store(true, Ordering::Relaxed);
        for t in lock(&self.inner.tasks).drain(..) {
            t.abort();
        }
    }
}
