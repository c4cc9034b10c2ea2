//! Benchmark: how long a legitimate node takes to join while 1,000 hostile
//! TCP connections from one address sit on the seed's stream port, and
//! what the seed holds for them.
//!
//! ```text
//! cargo run --release -p rumor --example hostile_join -- [idle|slowloris] [CONNECTIONS] [SOURCES]
//! ```
//!
//! The seed is encrypted, with the default stream limits (16 per source,
//! 128 in total, 64 KiB pre-auth budget, 10 s deadline). The attacker's
//! connections come from 127.0.0.2 (spread over 127.0.0.2.. when SOURCES
//! is over 1); `idle` connections send nothing, `slowloris` ones send a
//! plausible header length and then one byte every 500 ms. Joins come from
//! 127.0.0.1. Reported: join latency without and with the attack (median
//! and worst of 10), the seed's refusal counters, and the process's RSS
//! before and after the connections were opened (an upper bound on what
//! the seed holds for them: the attacker's side is in the same process).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rumor::{Key, Keyring, Node, Profile};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpSocket, TcpStream};

/// Joins measured in each phase.
const JOINS: usize = 10;

/// `VmRSS` of this process, in MiB.
fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Raise the open-files limit to its hard maximum: the attack needs two
/// descriptors per connection in this one process.
fn raise_nofile() {
    #[cfg(target_os = "linux")]
    {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: plain libc calls with a valid pointer to a local struct.
        unsafe {
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
                lim.rlim_cur = lim.rlim_max;
                libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
            }
        }
    }
}

fn builder(name: String, ring: &Keyring) -> rumor::Builder {
    Node::builder()
        .name(name)
        .bind("127.0.0.1:0".parse().expect("address"))
        .profile(Profile::Lan)
        .keyring(ring.clone())
        .metrics_interval(None)
}

/// Join `JOINS` fresh nodes through `seed` one after another; their
/// latencies, sorted.
async fn joins(seed: SocketAddr, ring: &Keyring, tag: &str) -> Vec<Duration> {
    let mut took = Vec::new();
    for i in 0..JOINS {
        let t0 = Instant::now();
        let node = builder(format!("{tag}-{i}"), ring)
            .seed(seed)
            .join_timeout(Duration::from_secs(30))
            .start()
            .await;
        took.push(t0.elapsed());
        match node {
            Ok(n) => {
                let _ = n.shutdown().await;
            }
            Err(e) => println!("  join {i} failed: {e}"),
        }
    }
    took.sort();
    took
}

fn show(what: &str, took: &[Duration]) {
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "{what}: median {:.1} ms, worst {:.1} ms",
        ms(took[took.len() / 2]),
        ms(took[took.len() - 1])
    );
}

async fn open(from: [u8; 4], to: SocketAddr) -> std::io::Result<TcpStream> {
    let s = TcpSocket::new_v4()?;
    s.bind(SocketAddr::from((from, 0)))?;
    s.connect(to).await
}

#[tokio::main]
async fn main() -> Result<(), rumor::Error> {
    raise_nofile();
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_else(|| "idle".into());
    let count: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1000);
    let sources: usize = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(1)
        .clamp(1, 250);
    let slowloris = mode == "slowloris";
    let ring = Keyring::new(Key::from_bytes([7; 32]));
    let seed = builder("seed".into(), &ring).start().await?;
    let addr = seed.advertise_addr();
    println!("mode: {mode}, connections: {count}, sources: {sources}");

    show("join, no attack", &joins(addr, &ring, "calm").await);

    let rss0 = rss_mib();
    let mut conns = Vec::with_capacity(count);
    for i in 0..count {
        let from = [127, 0, 0, 2 + (i % sources) as u8];
        match open(from, addr).await {
            Ok(mut s) => {
                if slowloris {
                    let _ = s.write_all(&200u32.to_be_bytes()).await;
                }
                conns.push(s);
            }
            Err(e) => println!("  connection {i} failed: {e}"),
        }
    }
    if slowloris {
        // Trickle one byte into each connection every 500 ms (bounded: 2 minutes).
        let mut conns = std::mem::take(&mut conns);
        tokio::spawn(async move {
            for _ in 0..240 {
                for s in conns.iter_mut() {
                    let _ = s.try_write(&[0xB1]);
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        });
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let rss1 = rss_mib();
    show(
        &format!("join, {count} {mode} connections open"),
        &joins(addr, &ring, "hostile").await,
    );
    let t = seed.stats().await?.transport;
    println!(
        "seed: refused per source {}, busy {}, evicted {}, deadline {}, unauthenticated {}, pre-auth bytes read {}",
        t.streams_refused_per_source,
        t.streams_rejected_busy,
        t.streams_evicted,
        t.stream_timeouts,
        t.streams_unauthenticated,
        t.stream_preauth_bytes_in
    );
    println!(
        "RSS: {rss0:.1} MiB before the connections, {rss1:.1} MiB with them open (+{:.1} MiB)",
        rss1 - rss0
    );
    drop(conns);
    seed.shutdown().await?;
    Ok(())
}
