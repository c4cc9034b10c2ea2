//! Admission of incoming stream connections: a cap on how many are open at
//! once from one source and in total, checked when a connection is
//! accepted, before a byte of it is read.
//!
//! A source is an IPv4 address, or an IPv6 /64 (one host commonly holds a
//! whole /64, so counting single IPv6 addresses would cap nothing).
//! IPv4-mapped IPv6 addresses count as their IPv4 address. A connection
//! holds its place through a [`Ticket`] until the ticket is dropped.
//!
//! When every place is taken, a new connection (within its source's cap)
//! evicts the oldest connection that has not yet sent an authentic header,
//! if that one has had its grace: a real peer authenticates within a round
//! trip, so idle connections spread over many sources cannot keep everyone
//! else out; they only evict each other. A connection whose header was
//! authentic is never evicted. The grace is [`GRACE_FACTOR`] times the
//! time real peers have lately taken to authenticate (a decaying maximum,
//! between [`MIN_GRACE`] and [`MAX_GRACE`]): a node swamped by a join
//! storm reads headers late, and without it each new connection would
//! evict one that was only waiting its turn, so that almost none got
//! through; with it the newcomer is refused at once (cheap, and retried).
//!
//! Both caps can change while connections are open ([`Admission::set_caps`]):
//! nothing open is closed by a lowered cap, new connections are refused
//! (or evict, as above) until the count is back under it.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv6Addr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

/// Default cap on incoming streams open at once from one source.
pub const DEFAULT_MAX_STREAMS_PER_SOURCE: usize = 16;

/// An unauthenticated connection can be evicted once it has been open this
/// many times the time real peers lately took to authenticate.
pub(crate) const GRACE_FACTOR: u32 = 4;
/// The least grace: above a loopback round trip and a scheduler's delay.
pub(crate) const MIN_GRACE: Duration = Duration::from_millis(10);
/// The most grace, however slowly peers authenticated: idle connections
/// hold a place at most this long once the node is full.
pub(crate) const MAX_GRACE: Duration = Duration::from_secs(2);

/// Why a connection was not admitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    /// Its source already has the most streams open it may have.
    PerSource,
    /// The node has the most incoming streams open it may have.
    Busy,
}

impl Refused {
    /// The reason's name in logs and metrics.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Refused::PerSource => "per_source",
            Refused::Busy => "busy",
        }
    }
}

/// Open incoming streams, by source.
#[derive(Debug)]
pub(crate) struct Admission {
    per_source: AtomicUsize,
    total: AtomicUsize,
    open: Mutex<Open>,
}

#[derive(Debug, Default)]
struct Open {
    by_source: HashMap<IpAddr, usize>,
    total: usize,
    /// Connections not yet authentic, oldest first, with when they were
    /// admitted and the means to evict them.
    unauthenticated: BTreeMap<u64, (Instant, oneshot::Sender<()>)>,
    next_id: u64,
    /// How long real peers lately took from admission to an authentic
    /// header: the longest, decaying by an eighth with each newer one.
    auth_time: Duration,
}

impl Open {
    /// How long an unauthenticated connection is safe from eviction.
    fn grace(&self) -> Duration {
        (self.auth_time * GRACE_FACTOR).clamp(MIN_GRACE, MAX_GRACE)
    }
}

/// A place taken by one open connection, given back when dropped.
#[derive(Debug)]
pub(crate) struct Ticket {
    admission: Arc<Admission>,
    source: IpAddr,
    id: u64,
    evicted: Option<oneshot::Receiver<()>>,
}

impl Admission {
    /// At most `per_source` connections from one source and `total` in all
    /// (each at least 1).
    pub(crate) fn new(per_source: usize, total: usize) -> Arc<Self> {
        Arc::new(Admission {
            per_source: AtomicUsize::new(per_source.max(1)),
            total: AtomicUsize::new(total.max(1)),
            open: Mutex::new(Open::default()),
        })
    }

    /// Change the caps (each at least 1) while running: connections open
    /// now stay open; the new caps apply to the next ones.
    pub(crate) fn set_caps(&self, per_source: usize, total: usize) {
        self.per_source.store(per_source.max(1), Ordering::Relaxed);
        self.total.store(total.max(1), Ordering::Relaxed);
    }

    /// The caps in force: (per source, in total).
    pub(crate) fn caps(&self) -> (usize, usize) {
        (
            self.per_source.load(Ordering::Relaxed),
            self.total.load(Ordering::Relaxed),
        )
    }

    fn lock(&self) -> MutexGuard<'_, Open> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Take a place for a connection from `peer` (evicting the oldest
    /// unauthenticated connection if all are taken and it has had its
    /// grace), or say why there is none.
    pub(crate) fn admit(self: &Arc<Self>, peer: IpAddr) -> Result<Ticket, Refused> {
        self.admit_at(peer, Instant::now())
    }

    fn admit_at(self: &Arc<Self>, peer: IpAddr, now: Instant) -> Result<Ticket, Refused> {
        let source = source_of(peer);
        let (per_source, total) = self.caps();
        let mut open = self.lock();
        if open.by_source.get(&source).copied().unwrap_or(0) >= per_source {
            return Err(Refused::PerSource);
        }
        if open.total >= total {
            // Its place is given back when its task sees the eviction and
            // ends, a moment later; the total runs over by at most the
            // evictions in flight.
            let grace = open.grace();
            let Some(oldest) = open.unauthenticated.first_entry() else {
                return Err(Refused::Busy);
            };
            if now.saturating_duration_since(oldest.get().0) < grace {
                return Err(Refused::Busy);
            }
            let (_, evict) = oldest.remove();
            let _ = evict.send(());
        }
        *open.by_source.entry(source).or_insert(0) += 1;
        open.total += 1;
        let id = open.next_id;
        open.next_id += 1;
        let (tx, rx) = oneshot::channel();
        open.unauthenticated.insert(id, (now, tx));
        Ok(Ticket {
            admission: self.clone(),
            source,
            id,
            evicted: Some(rx),
        })
    }

    /// Connections open now.
    pub(crate) fn open(&self) -> usize {
        self.lock().total
    }
}

impl Ticket {
    /// The connection sent an authentic header: it can no longer be evicted.
    pub(crate) fn authenticated(&self) {
        self.authenticated_at(Instant::now());
    }

    fn authenticated_at(&self, now: Instant) {
        let mut open = self.admission.lock();
        if let Some((admitted, _)) = open.unauthenticated.remove(&self.id) {
            let took = now.saturating_duration_since(admitted);
            open.auth_time = took.max(open.auth_time - open.auth_time / 8);
        }
    }

    /// A future that resolves when the connection is evicted (never, once
    /// it is authentic). The first call takes the signal; the futures of
    /// later calls never resolve.
    pub(crate) fn eviction(&mut self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let rx = self.evicted.take();
        async move {
            let evicted = match rx {
                Some(rx) => rx.await.is_ok(),
                None => false,
            };
            if !evicted {
                std::future::pending::<()>().await;
            }
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut open = self.admission.lock();
        open.unauthenticated.remove(&self.id);
        open.total = open.total.saturating_sub(1);
        if let Some(n) = open.by_source.get_mut(&self.source) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.by_source.remove(&self.source);
            }
        }
    }
}

/// The source `ip` counts against: itself for IPv4, its /64 for IPv6.
fn source_of(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn admit(a: &Arc<Admission>, peer: &str) -> Result<Ticket, Refused> {
        a.admit(peer.parse().expect("an address"))
    }

    #[test]
    fn caps_per_source_and_in_total() {
        let a = Admission::new(2, 3);
        let t1 = admit(&a, "127.0.0.2").expect("first");
        let t2 = admit(&a, "127.0.0.2").expect("second");
        assert_eq!(admit(&a, "127.0.0.2").err(), Some(Refused::PerSource));
        let t3 = admit(&a, "127.0.0.3").expect("another source");
        for t in [&t1, &t2, &t3] {
            t.authenticated();
        }
        assert_eq!(admit(&a, "127.0.0.4").err(), Some(Refused::Busy));
        assert_eq!(a.open(), 3);
        drop(t1);
        assert_eq!(a.open(), 2);
        let _t4 = admit(&a, "127.0.0.2").expect("a place was given back");
    }

    #[test]
    fn ipv6_counts_by_slash_64_and_mapped_v4_as_v4() {
        let a = Admission::new(1, 10);
        let _t = admit(&a, "fd00::1").expect("first");
        assert_eq!(admit(&a, "fd00::2").err(), Some(Refused::PerSource));
        let _u = admit(&a, "fd00:0:0:1::1").expect("another /64");
        let _v = admit(&a, "127.0.0.9").expect("v4");
        assert_eq!(
            admit(&a, "::ffff:127.0.0.9").err(),
            Some(Refused::PerSource)
        );
    }

    #[test]
    fn caps_change_without_closing_what_is_open() {
        let a = Admission::new(4, 4);
        let open: Vec<Ticket> = (0..3)
            .map(|_| admit(&a, "127.0.0.2").expect("under the caps"))
            .collect();
        for t in &open {
            t.authenticated();
        }
        a.set_caps(1, 2);
        assert_eq!(a.caps(), (1, 2));
        assert_eq!(a.open(), 3, "a lowered cap closes nothing");
        assert_eq!(admit(&a, "127.0.0.2").err(), Some(Refused::PerSource));
        assert_eq!(admit(&a, "127.0.0.3").err(), Some(Refused::Busy));
        a.set_caps(8, 8);
        let _more = admit(&a, "127.0.0.2").expect("a raised cap admits at once");
        assert_eq!(a.open(), 4);
    }

    #[tokio::test]
    async fn when_full_the_oldest_unauthenticated_is_evicted() {
        let within = Duration::from_secs(1);
        let t0 = Instant::now();
        let later = t0 + MAX_GRACE;
        let at = |a: &Arc<Admission>, peer: &str, now| a.admit_at(peer.parse().expect("ip"), now);
        let a = Admission::new(4, 3);
        let mut old = at(&a, "127.0.0.2", t0).expect("1");
        let authentic = at(&a, "127.0.0.3", t0).expect("2");
        authentic.authenticated_at(t0);
        let mut young = at(&a, "127.0.0.4", t0).expect("3");
        let x = at(&a, "127.0.0.5", later).expect("evicts the oldest");
        tokio::time::timeout(within, old.eviction())
            .await
            .expect("the oldest unauthenticated was evicted");
        drop(old);
        assert_eq!(a.open(), 3);
        // Next in line is `young`; the authentic one is never evicted.
        let y = at(&a, "127.0.0.6", later).expect("evicts the next");
        tokio::time::timeout(within, young.eviction())
            .await
            .expect("the next oldest was evicted");
        drop(young);
        x.authenticated_at(later);
        y.authenticated_at(later);
        assert_eq!(at(&a, "127.0.0.7", later).err(), Some(Refused::Busy));
        let mut never = authentic;
        assert!(
            tokio::time::timeout(Duration::from_millis(50), never.eviction())
                .await
                .is_err(),
            "an authentic connection is not evicted"
        );
    }

    #[tokio::test]
    async fn a_connection_within_its_grace_is_not_evicted() {
        let t0 = Instant::now();
        let at = |a: &Arc<Admission>, peer: &str, now| a.admit_at(peer.parse().expect("ip"), now);
        let a = Admission::new(4, 2);
        // Peers took 100 ms to authenticate (a busy node): grace 400 ms.
        let slow = at(&a, "127.0.0.2", t0).expect("1");
        slow.authenticated_at(t0 + Duration::from_millis(100));
        let mut waiting = at(&a, "127.0.0.3", t0).expect("2");
        let evicted = waiting.eviction();
        tokio::pin!(evicted);
        let newcomer = t0 + Duration::from_millis(300);
        assert_eq!(
            at(&a, "127.0.0.4", newcomer).err(),
            Some(Refused::Busy),
            "a connection admitted 300 ms ago is still within its grace"
        );
        assert!(
            tokio::time::timeout(Duration::from_millis(50), &mut evicted)
                .await
                .is_err(),
            "the waiting connection was not evicted"
        );
        let _late = at(&a, "127.0.0.4", t0 + Duration::from_millis(450))
            .expect("past its grace the waiting connection gives way");
        tokio::time::timeout(Duration::from_secs(1), &mut evicted)
            .await
            .expect("evicted once its grace was over");
    }

    #[test]
    fn the_grace_follows_recent_authentications_within_bounds() {
        let t0 = Instant::now();
        let a = Admission::new(8, 8);
        assert_eq!(a.lock().grace(), MIN_GRACE);
        let t = a.admit_at("127.0.0.2".parse().expect("ip"), t0).expect("1");
        t.authenticated_at(t0 + Duration::from_secs(5));
        assert_eq!(a.lock().grace(), MAX_GRACE, "capped");
        for _ in 0..64 {
            let t = a
                .admit_at("127.0.0.3".parse().expect("ip"), t0)
                .expect("fast");
            t.authenticated_at(t0 + Duration::from_millis(1));
            drop(t);
        }
        assert_eq!(a.lock().grace(), MIN_GRACE, "decayed with fast peers");
    }
}
