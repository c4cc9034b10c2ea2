//! The userspace link emulator: one thread that forwards IP packets between
//! the hosts' TUN devices and applies each link's conditions.
//!
//! This kernel has no `netem`, so delay, jitter, reordering and duplication
//! happen here: a packet read from host A's device addressed to host B gets
//! a [`Verdict`] from the shared [`Links`] table and waits in a timer heap
//! until its delivery instant, then is written into B's device. The thread
//! waits in `ppoll(2)` with a nanosecond timeout, so the emulator's own
//! added latency is tens of microseconds (measured by `rumor-testbed
//! selftest`, see the README). Randomness comes from one seeded generator.

use crate::link::{Links, Verdict};
use rand::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;
use serde::Serialize;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Counters of what the emulator did, since it started.
pub struct Stats {
    received: AtomicU64,
    delivered: AtomicU64,
    cut: AtomicU64,
    lost: AtomicU64,
    duplicated: AtomicU64,
    foreign: AtomicU64,
    overflow: AtomicU64,
    bytes: AtomicU64,
    /// Bytes read from each host (what it sent), IP headers included.
    sent_by: Vec<AtomicU64>,
}

/// A copy of [`Stats`] at one instant.
#[derive(Clone, Debug, Default, Serialize)]
pub struct StatsSnapshot {
    /// Packets read from the hosts.
    pub received: u64,
    /// Packets written to the hosts (duplicates counted twice).
    pub delivered: u64,
    /// Dropped on a cut link.
    pub cut: u64,
    /// Dropped by random loss.
    pub lost: u64,
    /// Delivered twice.
    pub duplicated: u64,
    /// Not IPv4 or not addressed to a host of the testbed: dropped.
    pub foreign: u64,
    /// Dropped because the receiving device's queue was full.
    pub overflow: u64,
    /// Bytes read from the hosts.
    pub bytes: u64,
    /// Bytes each host sent, IP headers included.
    pub sent_by: Vec<u64>,
}

impl Stats {
    fn new(hosts: usize) -> Stats {
        let z = || AtomicU64::new(0);
        Stats {
            received: z(),
            delivered: z(),
            cut: z(),
            lost: z(),
            duplicated: z(),
            foreign: z(),
            overflow: z(),
            bytes: z(),
            sent_by: (0..hosts).map(|_| z()).collect(),
        }
    }

    /// The counters now.
    pub fn snapshot(&self) -> StatsSnapshot {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        StatsSnapshot {
            received: g(&self.received),
            delivered: g(&self.delivered),
            cut: g(&self.cut),
            lost: g(&self.lost),
            duplicated: g(&self.duplicated),
            foreign: g(&self.foreign),
            overflow: g(&self.overflow),
            bytes: g(&self.bytes),
            sent_by: self.sent_by.iter().map(g).collect(),
        }
    }
}

fn bump(a: &AtomicU64, by: u64) {
    a.fetch_add(by, Ordering::Relaxed);
}

/// A running emulator; stops (and joins its thread) when dropped.
pub struct Emulator {
    links: Arc<Mutex<Links>>,
    stats: Arc<Stats>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// Host `i` (0-based) has address `network + i + 1`.
pub fn host_addr(network: Ipv4Addr, i: usize) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(network).wrapping_add(i as u32 + 1))
}

impl Emulator {
    /// Starts forwarding among `devices` (host `i`'s TUN device is
    /// `devices[i]`, its address `host_addr(network, i)`).
    pub fn start(devices: Vec<File>, network: Ipv4Addr, links: Links, seed: u64) -> Emulator {
        let links = Arc::new(Mutex::new(links));
        let stats = Arc::new(Stats::new(devices.len()));
        let stop = Arc::new(AtomicBool::new(false));
        let forwarder = Forwarder {
            devices,
            network: u32::from(network),
            links: links.clone(),
            stats: stats.clone(),
            stop: stop.clone(),
            rng: Xoshiro256PlusPlus::seed_from_u64(seed),
            queue: BinaryHeap::new(),
            seq: 0,
        };
        let thread = std::thread::Builder::new()
            .name("link-emulator".into())
            .spawn(move || forwarder.run())
            .ok();
        Emulator {
            links,
            stats,
            stop,
            thread,
        }
    }

    /// Changes the link table (the change applies to the next packet).
    pub fn with_links<T>(&self, f: impl FnOnce(&mut Links) -> T) -> T {
        f(&mut self.links.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// The counters now.
    pub fn stats(&self) -> StatsSnapshot {
        self.stats.snapshot()
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct Queued {
    at: Instant,
    seq: u64,
    to: usize,
    packet: Vec<u8>,
}

impl PartialEq for Queued {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for Queued {}
impl PartialOrd for Queued {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Queued {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(o.at, o.seq))
    }
}

struct Forwarder {
    devices: Vec<File>,
    network: u32,
    links: Arc<Mutex<Links>>,
    stats: Arc<Stats>,
    stop: Arc<AtomicBool>,
    rng: Xoshiro256PlusPlus,
    queue: BinaryHeap<Reverse<Queued>>,
    seq: u64,
}

/// Packets read from one device before the others get a turn.
const READ_BURST: usize = 64;
/// The longest the loop sleeps, so that a stop is seen.
const MAX_WAIT: Duration = Duration::from_millis(50);

impl Forwarder {
    fn run(mut self) {
        let mut fds: Vec<libc::pollfd> = self
            .devices
            .iter()
            .map(|d| libc::pollfd {
                fd: d.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        let mut buf = vec![0u8; 65_536];
        while !self.stop.load(Ordering::Relaxed) {
            let now = Instant::now();
            let wait = self
                .queue
                .peek()
                .map_or(MAX_WAIT, |q| q.0.at.saturating_duration_since(now))
                .min(MAX_WAIT);
            let ts = libc::timespec {
                tv_sec: wait.as_secs() as libc::time_t,
                tv_nsec: wait.subsec_nanos() as libc::c_long,
            };
            // SAFETY: fds is a live array of pollfd of the given length.
            let ready = unsafe {
                libc::ppoll(
                    fds.as_mut_ptr(),
                    fds.len() as libc::nfds_t,
                    &ts,
                    std::ptr::null(),
                )
            };
            if ready > 0 {
                let readable: Vec<usize> = (0..fds.len())
                    .filter(|&i| fds[i].revents & libc::POLLIN != 0)
                    .collect();
                for from in readable {
                    self.read_from(from, &mut buf);
                }
            }
            self.deliver_due();
        }
    }

    fn read_from(&mut self, from: usize, buf: &mut [u8]) {
        for _ in 0..READ_BURST {
            let n = match (&self.devices[from]).read(buf) {
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(_) => return,
            };
            bump(&self.stats.received, 1);
            bump(&self.stats.bytes, n as u64);
            bump(&self.stats.sent_by[from], n as u64);
            let packet = &buf[..n];
            let Some(to) = self.destination(packet) else {
                bump(&self.stats.foreign, 1);
                continue;
            };
            let now = Instant::now();
            let verdict = self
                .links
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .verdict(from, to, n, now, &mut self.rng);
            match verdict {
                Verdict::Cut => bump(&self.stats.cut, 1),
                Verdict::Lost => bump(&self.stats.lost, 1),
                Verdict::Deliver(at) => {
                    if at.len() > 1 {
                        bump(&self.stats.duplicated, 1);
                    }
                    for at in at {
                        self.seq += 1;
                        self.queue.push(Reverse(Queued {
                            at,
                            seq: self.seq,
                            to,
                            packet: packet.to_vec(),
                        }));
                    }
                }
            }
        }
    }

    /// The host an IPv4 packet is addressed to, if it is one of ours.
    fn destination(&self, packet: &[u8]) -> Option<usize> {
        if packet.len() < 20 || packet[0] >> 4 != 4 {
            return None;
        }
        let dst = u32::from_be_bytes([packet[16], packet[17], packet[18], packet[19]]);
        let i = dst.checked_sub(self.network)?.checked_sub(1)? as usize;
        (i < self.devices.len()).then_some(i)
    }

    fn deliver_due(&mut self) {
        let now = Instant::now();
        while self.queue.peek().is_some_and(|q| q.0.at <= now) {
            let Some(Reverse(q)) = self.queue.pop() else {
                break;
            };
            match (&self.devices[q.to]).write(&q.packet) {
                // A TUN device takes a whole packet or none.
                Ok(n) if n == q.packet.len() => bump(&self.stats.delivered, 1),
                _ => bump(&self.stats.overflow, 1),
            }
        }
    }
}
