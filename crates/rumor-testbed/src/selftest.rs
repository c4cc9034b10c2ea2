//! `rumor-testbed selftest`: measures the emulator itself — the latency it
//! adds (UDP round trips through it against the same over a veth pair), how
//! exactly it applies a configured delay, and its packet-rate ceiling.

use crate::hosts::Hosts;
use crate::link::Link;
use crate::netns::Namespace;
use anyhow::{Context, Result};
use serde::Serialize;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Round-trip times, in microseconds.
#[derive(Debug, Serialize)]
pub struct Rtt {
    /// Median.
    pub p50_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
}

/// What the self-test measured.
#[derive(Debug, Serialize)]
pub struct Report {
    /// UDP round trips over a veth pair (the kernel alone).
    pub veth: Rtt,
    /// Through the emulator, no conditions.
    pub emulator: Rtt,
    /// Through the emulator with `delay` one way.
    pub delayed: Rtt,
    /// The delay configured for `delayed`, in ms.
    pub delay_ms: f64,
    /// 100-byte packets per second one host sent through the emulator and
    /// the other received, flooding for 2 s.
    pub packets_per_sec: f64,
    /// Share of the flood's packets that arrived.
    pub flood_delivered: f64,
}

/// Runs the self-test with `pings` round trips per measurement.
pub fn run(pings: usize, delay: Duration) -> Result<Report> {
    let veth = veth_rtt(pings)?;
    let hosts = Hosts::create(
        2,
        "10.201.0.0/24".parse().map_err(anyhow::Error::msg)?,
        Link::default(),
        1,
    )?;
    let a = SocketAddr::from((hosts.addr(0), 9_000));
    let b = SocketAddr::from((hosts.addr(1), 9_000));
    let emulator = rtt(hosts.ns(0), a, hosts.ns(1), b, pings)?;
    hosts.emulator.with_links(|l| l.each(|k| k.delay = delay));
    let delayed = rtt(hosts.ns(0), a, hosts.ns(1), b, pings.min(200))?;
    hosts
        .emulator
        .with_links(|l| l.each(|k| k.delay = Duration::ZERO));
    let (pps, share) = flood(hosts.ns(0), a, hosts.ns(1), b, Duration::from_secs(2))?;
    Ok(Report {
        veth,
        emulator,
        delayed,
        delay_ms: delay.as_secs_f64() * 1e3,
        packets_per_sec: pps,
        flood_delivered: share,
    })
}

fn veth_rtt(pings: usize) -> Result<Rtt> {
    let run = crate::hosts::run_tag();
    let x = Namespace::create(&format!("{run}-vx"))?;
    let y = Namespace::create(&format!("{run}-vy"))?;
    crate::netns::ip(&[
        "link",
        "add",
        "rtbvx",
        "netns",
        x.name(),
        "type",
        "veth",
        "peer",
        "name",
        "rtbvy",
        "netns",
        y.name(),
    ])?;
    x.ip(&["addr", "add", "10.202.0.1/24", "dev", "rtbvx"])?;
    y.ip(&["addr", "add", "10.202.0.2/24", "dev", "rtbvy"])?;
    x.ip(&["link", "set", "rtbvx", "up"])?;
    y.ip(&["link", "set", "rtbvy", "up"])?;
    rtt(
        &x,
        "10.202.0.1:9000".parse()?,
        &y,
        "10.202.0.2:9000".parse()?,
        pings,
    )
}

fn bind(ns: &Namespace, at: SocketAddr) -> Result<UdpSocket> {
    let s = ns
        .run_in(|| UdpSocket::bind(at))?
        .with_context(|| format!("bind {at}"))?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    Ok(s)
}

fn rtt(na: &Namespace, a: SocketAddr, nb: &Namespace, b: SocketAddr, pings: usize) -> Result<Rtt> {
    let client = bind(na, a)?;
    let server = bind(nb, b)?;
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let echo = std::thread::spawn(move || {
        let mut buf = [0u8; 1500];
        while !stop2.load(Ordering::Relaxed) {
            if let Ok((n, from)) = server.recv_from(&mut buf) {
                let _ = server.send_to(&buf[..n], from);
            }
        }
    });
    let mut times = Vec::with_capacity(pings);
    let mut buf = [0u8; 1500];
    // A few unmeasured round trips first: neighbour entries, caches.
    for i in 0..pings + 20 {
        let t = Instant::now();
        client.send_to(&(i as u64).to_be_bytes(), b)?;
        let n = client.recv(&mut buf).context("no echo within 2 s")?;
        if i >= 20 && n == 8 {
            times.push(t.elapsed().as_secs_f64() * 1e6);
        }
    }
    stop.store(true, Ordering::Relaxed);
    let _ = client.send_to(b"x", b);
    let _ = echo.join();
    times.sort_by(f64::total_cmp);
    let at = |q: f64| times[((times.len() - 1) as f64 * q) as usize];
    Ok(Rtt {
        p50_us: at(0.5),
        p99_us: at(0.99),
    })
}

fn flood(
    na: &Namespace,
    a: SocketAddr,
    nb: &Namespace,
    b: SocketAddr,
    for_: Duration,
) -> Result<(f64, f64)> {
    let tx = bind(na, SocketAddr::new(a.ip(), 9_001))?;
    let rx = bind(nb, SocketAddr::new(b.ip(), 9_001))?;
    rx.set_read_timeout(Some(Duration::from_millis(500)))?;
    let got = Arc::new(AtomicU64::new(0));
    let got2 = got.clone();
    let counter = std::thread::spawn(move || {
        let mut buf = [0u8; 1500];
        while rx.recv(&mut buf).is_ok() {
            got2.fetch_add(1, Ordering::Relaxed);
        }
    });
    let to = SocketAddr::new(b.ip(), 9_001);
    let payload = [7u8; 72]; // + 28 bytes of headers = 100
    let start = Instant::now();
    let mut sent = 0u64;
    while start.elapsed() < for_ {
        if tx.send_to(&payload, to).is_ok() {
            sent += 1;
        }
    }
    let _ = counter.join();
    let n = got.load(Ordering::Relaxed);
    Ok((n as f64 / for_.as_secs_f64(), n as f64 / sent.max(1) as f64))
}
