//! Admission of incoming stream connections: a cap on how many are open at
//! once from one source and in total, checked when a connection is
//! accepted, before a byte of it is read.
//!
//! A source is an IPv4 address, or an IPv6 /64 (one host commonly holds a
//! whole /64, so counting single IPv6 addresses would cap nothing).
//! IPv4-mapped IPv6 addresses count as their IPv4 address. A connection
//! holds its place through a [`Ticket`] until the ticket is dropped.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex, MutexGuard};

/// Default cap on incoming streams open at once from one source.
pub const DEFAULT_MAX_STREAMS_PER_SOURCE: usize = 16;

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
    per_source: usize,
    total: usize,
    open: Mutex<Open>,
}

#[derive(Debug, Default)]
struct Open {
    by_source: HashMap<IpAddr, usize>,
    total: usize,
}

/// A place taken by one open connection, given back when dropped.
#[derive(Debug)]
pub(crate) struct Ticket {
    admission: Arc<Admission>,
    source: IpAddr,
}

impl Admission {
    /// At most `per_source` connections from one source and `total` in all
    /// (each at least 1).
    pub(crate) fn new(per_source: usize, total: usize) -> Arc<Self> {
        Arc::new(Admission {
            per_source: per_source.max(1),
            total: total.max(1),
            open: Mutex::new(Open::default()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Open> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Take a place for a connection from `peer`, or say why there is none.
    pub(crate) fn admit(self: &Arc<Self>, peer: IpAddr) -> Result<Ticket, Refused> {
        let source = source_of(peer);
        let mut open = self.lock();
        if open.total >= self.total {
            return Err(Refused::Busy);
        }
        let n = open.by_source.entry(source).or_insert(0);
        if *n >= self.per_source {
            return Err(Refused::PerSource);
        }
        *n += 1;
        open.total += 1;
        Ok(Ticket {
            admission: self.clone(),
            source,
        })
    }

    /// Connections open now.
    pub(crate) fn open(&self) -> usize {
        self.lock().total
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut open = self.admission.lock();
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

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("an address")
    }

    #[test]
    fn caps_per_source_and_in_total() {
        let a = Admission::new(2, 3);
        let t1 = a.admit(ip("127.0.0.2")).expect("first");
        let _t2 = a.admit(ip("127.0.0.2")).expect("second");
        assert_eq!(a.admit(ip("127.0.0.2")).err(), Some(Refused::PerSource));
        let _t3 = a.admit(ip("127.0.0.3")).expect("another source");
        assert_eq!(a.admit(ip("127.0.0.4")).err(), Some(Refused::Busy));
        assert_eq!(a.open(), 3);
        drop(t1);
        assert_eq!(a.open(), 2);
        let _t4 = a.admit(ip("127.0.0.2")).expect("a place was given back");
    }

    #[test]
    fn ipv6_counts_by_slash_64_and_mapped_v4_as_v4() {
        let a = Admission::new(1, 10);
        let _t = a.admit(ip("fd00::1")).expect("first");
        assert_eq!(a.admit(ip("fd00::2")).err(), Some(Refused::PerSource));
        let _u = a.admit(ip("fd00:0:0:1::1")).expect("another /64");
        let _v = a.admit(ip("127.0.0.9")).expect("v4");
        assert_eq!(
            a.admit(ip("::ffff:127.0.0.9")).err(),
            Some(Refused::PerSource)
        );
    }
}
