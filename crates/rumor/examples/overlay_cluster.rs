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
//! last delivery; the process's memory and CPU per node. Exits with an
//! error if the overlay is not whole within 120 s or a broadcast misses a
//! node within 2 s. The cluster itself is `support/overlay.rs`, which
//! `tests/overlay_udp.rs` runs too.

#[path = "support/overlay.rs"]
mod overlay;
#[path = "support/process.rs"]
mod process;

use std::time::Duration;

use process::{cpu_seconds, status_mib};
use rand::{Rng, SeedableRng};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let n: usize = match args.next().map(|a| a.parse()) {
        Some(Ok(n)) if n >= 2 => n,
        _ => return Err("usage: overlay_cluster N [BROADCASTS] [storm] (N >= 2)".into()),
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
    let cpu0 = cpu_seconds();
    let cluster = overlay::Cluster::start(n, storm, 1).await?;
    let started = cluster.started;
    println!("{n} nodes started in {:.1} s", started.as_secs_f64());
    let report = |at: Duration, shape: &overlay::Shape| {
        println!("  {:.0} s: {shape:?}", at.as_secs_f64());
    };
    let Some(whole_at) = cluster.wait_whole(Duration::from_secs(120), report).await else {
        return Err("the overlay was not whole 120 s after the last start".into());
    };
    println!(
        "overlay whole {:.1} s after the last start ({:.1} s after the first)",
        (whole_at - started).as_secs_f64(),
        whole_at.as_secs_f64()
    );
    let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(2);
    let mut worst = Duration::ZERO;
    let mut all_reached = true;
    for k in 0..broadcasts {
        let from = rng.random_range(0..n);
        cluster.broadcast(from, k);
        tokio::time::sleep(Duration::from_secs(2)).await;
        let (reached, last) = cluster.delivered(k);
        println!(
            "broadcast {k} from node {from}: reached {reached}/{n}, last delivery after {:.0} ms",
            last.as_secs_f64() * 1000.0
        );
        all_reached &= reached == n;
        worst = worst.max(last);
    }
    let cpu = cpu_seconds() - cpu0;
    let wall = cluster.origin.elapsed().as_secs_f64();
    println!(
        "every broadcast reached all {n}: {all_reached}; slowest last delivery {:.0} ms",
        worst.as_secs_f64() * 1000.0
    );
    println!(
        "peak RSS {:.0} MiB ({:.1} KiB per node); CPU {:.1} s over {:.1} s ({:.2} ms per node per s); undecodable datagrams {}",
        status_mib("VmHWM:"),
        status_mib("VmHWM:") * 1024.0 / n as f64,
        cpu,
        wall,
        cpu * 1000.0 / wall / n as f64,
        cluster.bad()
    );
    if !all_reached {
        return Err("a broadcast missed nodes (see above)".into());
    }
    Ok(())
}
