//! Benchmark: N nodes in one process on 127.0.0.1 with the LAN profile.
//! Measures the time until every node sees N alive, how long a user event
//! then takes to reach every node (and, in partial membership, the sizes
//! of the active views), then the process's CPU and memory over a
//! steady-state window.
//!
//! ```text
//! cargo run --release -p rumor --example loopback_cluster -- N [STEADY_SECS] [concurrent] [partial]
//! ```
//!
//! By default each node joins through the first as it starts; with
//! `concurrent`, all nodes start first and then join through the first at
//! once, each failed join retried after a wait (up to 8 times).
//! With `partial`, the nodes run partial membership (`Membership::Partial`).

#[path = "support/process.rs"]
mod process;

use std::sync::Arc;
use std::time::{Duration, Instant};

use process::{cpu_seconds, status_mib};
use rumor::core::message::MessageType;
use rumor::{Event, EventFilter, MemberEventKind, Membership, Node, Profile};

/// Every node's stats, all asked at once: on a saturated machine, 1,000
/// requests one after another took minutes.
async fn all_stats(nodes: &[Arc<Node>]) -> Vec<Result<rumor::Stats, rumor::Error>> {
    futures_util::future::join_all(nodes.iter().map(|node| node.stats())).await
}

/// Print, for each node that does not list every node as alive, the
/// names it lacks or holds as not alive (at most three of them).
async fn lagging(nodes: &[Arc<Node>]) -> Result<(), rumor::Error> {
    let names: Vec<String> = (0..nodes.len()).map(|i| format!("node-{i}")).collect();
    for (i, node) in nodes.iter().enumerate() {
        let alive: std::collections::HashSet<String> = node
            .members()
            .await?
            .into_iter()
            .filter(|m| m.state == rumor::MemberState::Alive)
            .map(|m| m.name.to_string())
            .collect();
        let lacks: Vec<&String> = names.iter().filter(|n| !alive.contains(*n)).collect();
        if !lacks.is_empty() {
            println!(
                "    node-{i} lacks {} alive: {:?}",
                lacks.len(),
                &lacks[..lacks.len().min(3)]
            );
        }
    }
    Ok(())
}

/// How long a user event sent by node `from` takes to be delivered at
/// every node (each subscriber is awaited on its own, so the time is the
/// last delivery's, not a polling loop's).
async fn broadcast_time(nodes: &[Arc<Node>], from: usize) -> Result<Duration, rumor::Error> {
    let mut subs: Vec<_> = nodes
        .iter()
        .map(|n| n.subscribe(EventFilter::USER))
        .collect();
    let t = Instant::now();
    nodes[from].send_event("probe", b"reach".to_vec()).await?;
    let waits = subs.iter_mut().map(|sub| async move {
        let got = tokio::time::timeout(Duration::from_secs(60), sub.recv()).await;
        matches!(got, Ok(Ok(Event::User(_)))).then(|| t.elapsed())
    });
    let times = futures_util::future::join_all(waits).await;
    let missed = times.iter().filter(|t| t.is_none()).count();
    if missed > 0 {
        println!("  the user event missed {missed} nodes within 60 s");
    }
    Ok(times.into_iter().flatten().max().unwrap_or_default())
}

/// The five message types sent most, per node per second over `secs`,
/// from the counts of `after` less those of `before` (all nodes summed).
fn busiest_types(before: &[rumor::Stats], after: &[rumor::Stats], secs: f64) -> String {
    let mut by_type = [0u64; MessageType::ALL.len()];
    for (a, b) in after.iter().zip(before) {
        for (k, (now, then)) in a
            .core
            .messages_out
            .iter()
            .zip(&b.core.messages_out)
            .enumerate()
        {
            by_type[k] += now - then;
        }
    }
    let mut busiest: Vec<(u64, MessageType)> = by_type.into_iter().zip(MessageType::ALL).collect();
    busiest.sort_by_key(|(count, _)| std::cmp::Reverse(*count));
    let per_node = |count: u64| count as f64 / secs / after.len() as f64;
    let top: Vec<String> = busiest
        .iter()
        .take_while(|(count, _)| *count > 0)
        .take(5)
        .map(|(count, kind)| format!("{} {:.2}", kind.as_str(), per_node(*count)))
        .collect();
    top.join(", ")
}

/// Retries of a join that failed, in `concurrent` mode.
const JOIN_RETRIES: u32 = 8;

#[tokio::main]
async fn main() -> Result<(), rumor::Error> {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(64);
    let steady: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(30);
    let flags: Vec<String> = args.collect();
    let concurrent = flags.iter().any(|f| f == "concurrent");
    let membership = if flags.iter().any(|f| f == "partial") {
        Membership::Partial
    } else {
        Membership::Full
    };
    let loopback = "127.0.0.1:0".parse().expect("a socket address");
    println!(
        "nodes: {n}, profile: lan, {membership} membership, steady window: {steady} s, joins: {}",
        if concurrent {
            "concurrent"
        } else {
            "one after another"
        }
    );

    let t0 = Instant::now();
    let mut nodes: Vec<Arc<Node>> = Vec::with_capacity(n);
    for i in 0..n {
        let mut b = Node::builder()
            .name(format!("node-{i}"))
            .bind(loopback)
            .profile(Profile::Lan)
            .membership(membership)
            // The nodes stand for N hosts but share one address, whose
            // default cap of 16 incoming streams would make a burst of
            // concurrent joins wait for retries.
            .max_streams_per_source(n.max(16))
            .rng_seed(i as u64);
        if let (Some(first), false) = (nodes.first(), concurrent) {
            b = b.seed(first.advertise_addr());
        }
        nodes.push(Arc::new(b.start().await?));
        if (i + 1) % 100 == 0 {
            println!(
                "  {} started after {:.2} s (CPU {:.1} s, RSS {:.1} MiB)",
                i + 1,
                t0.elapsed().as_secs_f64(),
                cpu_seconds(),
                status_mib("VmRSS:")
            );
        }
    }
    if concurrent {
        // Every node but the first joins through the first, all at once.
        let seed = nodes[0].advertise_addr();
        // A join the seed could not answer in time is retried, as an
        // agent's retry-join does, after a wait spread over the nodes.
        let mut joins = tokio::task::JoinSet::new();
        for (i, node) in nodes.iter().enumerate().skip(1) {
            let node = node.clone();
            joins.spawn(async move {
                let mut retries = 0u32;
                loop {
                    match node.join([seed]).await {
                        Ok(_) => return (retries, None),
                        Err(e) if retries == JOIN_RETRIES => return (retries, Some(e)),
                        Err(_) => retries += 1,
                    }
                    let spread = Duration::from_millis((i as u64 * 37) % 1000);
                    tokio::time::sleep(Duration::from_millis(500) * retries + spread).await;
                }
            });
        }
        let (mut retried, mut failed) = (0, 0);
        while let Some(r) = joins.join_next().await {
            if let Ok((retries, error)) = r {
                retried += u32::from(retries > 0);
                if let Some(e) = error {
                    failed += 1;
                    println!("a join failed {JOIN_RETRIES} retries: {e}");
                }
            }
        }
        println!("  joins retried: {retried}, failed: {failed}");
    }
    let started = t0.elapsed();
    println!(
        "all {n} started and joined after {:.2} s",
        started.as_secs_f64()
    );
    let (mut per_source, mut evicted) = (0, 0);
    for s in all_stats(&nodes).await {
        let t = s?.transport;
        per_source += t.streams_refused_per_source;
        evicted += t.streams_evicted;
    }
    println!("  incoming streams refused per source {per_source}, evicted {evicted}");

    let mut last_report = Instant::now();
    let converged = loop {
        let mut done = 0;
        let (mut min_live, mut suspect, mut dead) = (usize::MAX, 0, 0);
        let (mut busy, mut stream_errors, mut timeouts) = (0, 0, 0);
        let (mut queued, mut sent) = (0, 0);
        for s in all_stats(&nodes).await {
            let s = s?;
            queued += s.broadcast_queue_messages;
            sent += s.transport.udp_packets_out;
            let live = s.members.alive + s.members.suspect;
            min_live = min_live.min(live);
            suspect += s.members.suspect;
            dead += s.members.dead;
            busy += s.transport.streams_rejected_busy;
            stream_errors += s.transport.stream_errors;
            timeouts += s.transport.stream_timeouts;
            if s.members.alive == n {
                done += 1;
            }
        }
        if done == n {
            break t0.elapsed();
        }
        if last_report.elapsed() > Duration::from_secs(5) {
            last_report = Instant::now();
            if n - done <= 20 {
                lagging(&nodes).await?;
            }
            println!(
                "  {:.1} s: {done}/{n} see all alive, fewest live {min_live}, suspect {suspect}, dead {dead}, streams refused {busy}, failed {stream_errors}, timed out {timeouts}, updates queued {queued}, datagrams sent {sent}, CPU {:.1} s, RSS {:.1} MiB",
                t0.elapsed().as_secs_f64(),
                cpu_seconds(),
                status_mib("VmRSS:")
            );
        }
        if t0.elapsed() > Duration::from_secs(300) {
            println!("not converged after 300 s: {done}/{n} nodes see {n} alive");
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    println!(
        "converged (every node sees {n} alive) after {:.2} s",
        converged.as_secs_f64()
    );
    let mut at_convergence = Vec::with_capacity(n);
    for s in all_stats(&nodes).await {
        at_convergence.push(s?);
    }
    let datagrams: u64 = at_convergence
        .iter()
        .map(|s| s.transport.udp_packets_out)
        .sum();
    println!(
        "  until then, per node: {:.0} datagrams sent; messages sent per node per second: {}",
        datagrams as f64 / n as f64,
        busiest_types(
            &vec![rumor::Stats::default(); n],
            &at_convergence,
            converged.as_secs_f64()
        )
    );

    if membership == Membership::Partial {
        let (mut fewest, mut most) = (usize::MAX, 0);
        for s in all_stats(&nodes).await {
            let s = s?;
            fewest = fewest.min(s.active_view);
            most = most.max(s.active_view);
        }
        println!("active views: {fewest} to {most} neighbours");
    }
    // Three user events, one after another, from nodes spread over the
    // cluster: the first after a cold start may find a tree still in repair.
    for from in [n / 2, n / 3, n - 1] {
        let reached = broadcast_time(&nodes, from).await?;
        println!(
            "a user event from node-{from} reached all {n} after {:.0} ms",
            reached.as_secs_f64() * 1000.0
        );
    }

    if membership == Membership::Partial {
        // Each node announces itself on the tree once more 8 probe
        // intervals (8 s) after its join: let the last joiners' go out
        // before the steady window.
        tokio::time::sleep(Duration::from_secs(9)).await;
    }
    let mut subs: Vec<_> = nodes
        .iter()
        .map(|n| n.subscribe(EventFilter::MEMBER))
        .collect();
    let before: Vec<_> = {
        let mut v = Vec::with_capacity(n);
        for node in &nodes {
            v.push(node.stats().await?);
        }
        v
    };
    let cpu0 = cpu_seconds();
    let w0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(steady)).await;
    let cpu = cpu_seconds() - cpu0;
    let wall = w0.elapsed().as_secs_f64();
    let (mut pkts, mut bytes, mut live_ok) = (0u64, 0u64, 0usize);
    let mut after = Vec::with_capacity(n);
    for (node, b) in nodes.iter().zip(&before) {
        let s = node.stats().await?;
        pkts += s.transport.udp_packets_out - b.transport.udp_packets_out;
        bytes += s.transport.udp_bytes_out - b.transport.udp_bytes_out;
        if s.members.alive == n {
            live_ok += 1;
        }
        after.push(s);
    }
    let (mut suspect, mut failed) = (0, 0);
    for rx in subs.iter_mut() {
        while let Ok(ev) = rx.try_recv() {
            let Event::Member(ev) = ev else { continue };
            match ev.kind {
                MemberEventKind::Suspect => suspect += 1,
                MemberEventKind::Failed => failed += 1,
                _ => {}
            }
        }
    }
    println!(
        "steady state over {wall:.1} s: CPU {:.3} cores, RSS {:.1} MiB (peak {:.1} MiB)",
        cpu / wall,
        status_mib("VmRSS:"),
        status_mib("VmHWM:")
    );
    println!(
        "traffic: {:.0} datagrams/s, {:.1} KiB/s in total; suspect events {suspect}, failed events {failed}; {live_ok}/{n} nodes still see {n} alive",
        pkts as f64 / wall,
        bytes as f64 / wall / 1024.0
    );
    println!(
        "messages sent per node per second: {}",
        busiest_types(&before, &after, wall)
    );
    drop(nodes);
    Ok(())
}
