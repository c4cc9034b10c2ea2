//! The workloads of the brief, each a function over any [`Engine`].

use crate::Engine;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, Instant};

/// A ~20-byte key for index `i`.
pub fn key(i: u64) -> Vec<u8> {
    format!("kv/key-{i:013}").into_bytes()
}

/// A 100-byte value, pseudo-random so that compression gains nothing it
/// would not gain on encoded entries.
pub fn value(seed: &mut u64) -> Vec<u8> {
    let mut v = Vec::with_capacity(100);
    while v.len() < 100 {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        v.extend_from_slice(&seed.to_le_bytes());
    }
    v.truncate(100);
    v
}

/// Bytes the files under `dir` occupy on disk (allocated blocks).
pub fn disk_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let m = e.metadata().unwrap();
        if m.is_dir() {
            total += disk_bytes(&e.path());
        } else {
            total += m.blocks() * 512;
        }
    }
    total
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// (a) bulk load of `n` keys, then (e) reopen and full scan.
pub fn bulk<E: Engine>(dir: &Path, n: u64) {
    let mut seed = 0x9E37_79B9_7F4A_7C15;
    let start = Instant::now();
    {
        let mut e = E::open(dir);
        let mut batch = Vec::with_capacity(10_000);
        for i in 0..n {
            batch.push((key(i), value(&mut seed)));
            if batch.len() == 10_000 {
                e.commit(&batch, false);
                batch.clear();
            }
        }
        e.commit(&batch, true);
        let load = start.elapsed();
        let after = disk_bytes(dir);
        println!(
            "{} bulk load {n} keys (10k per commit, last durable): {:.2} s, {:.0} keys/s, {:.1} B/key on disk",
            E::NAME,
            load.as_secs_f64(),
            n as f64 / load.as_secs_f64(),
            after as f64 / n as f64
        );
        let t = Instant::now();
        if let Some(how) = e.compact() {
            println!(
                "{} after {how} ({:.2} s): {:.1} B/key on disk",
                E::NAME,
                t.elapsed().as_secs_f64(),
                disk_bytes(dir) as f64 / n as f64
            );
        }
    }
    drop_caches();
    let t = Instant::now();
    let e = E::open(dir);
    let open = t.elapsed();
    let t = Instant::now();
    let (count, bytes) = e.scan();
    let scan = t.elapsed();
    assert_eq!(count as u64, n);
    println!(
        "{} reopen: {:.1} ms; full scan of {count} keys ({bytes} B): {:.0} ms; {:.1} B/key on disk",
        E::NAME,
        open.as_secs_f64() * 1e3,
        scan.as_secs_f64() * 1e3,
        disk_bytes(dir) as f64 / n as f64
    );
    drop(e);
    drop_caches();
    let t = Instant::now();
    if let Some(e) = E::open_verified(dir) {
        let open = t.elapsed();
        let t = Instant::now();
        let (count, _) = e.scan();
        println!(
            "{} reopen with full integrity check: {:.1} ms; full scan of {count} keys: {:.0} ms",
            E::NAME,
            open.as_secs_f64() * 1e3,
            t.elapsed().as_secs_f64() * 1e3
        );
    }
}

/// Lets the disk settle between runs: flushes dirty pages and waits.
pub fn settle() {
    let _ = std::process::Command::new("sync").status();
    std::thread::sleep(Duration::from_secs(1));
}

/// Asks the kernel to drop its page cache, so that reopen and scan read
/// from disk; says so when it cannot (a container).
fn drop_caches() {
    let _ = std::process::Command::new("sync").status();
    match std::fs::write("/proc/sys/vm/drop_caches", "3") {
        Ok(()) => println!("(page cache dropped before reopen)"),
        Err(_) => println!("(page cache NOT dropped: warm-cache numbers)"),
    }
}

/// (b) and (c): durable commits of `per_commit` writes each, for `secs`.
pub fn group<E: Engine>(dir: &Path, per_commit: usize, secs: f64) {
    let mut e = E::open(dir);
    let mut seed = 1u64 + per_commit as u64;
    let mut lat = Vec::new();
    let mut writes = 0u64;
    let mut i = 0u64;
    let start = Instant::now();
    while start.elapsed().as_secs_f64() < secs {
        let batch: Vec<_> = (0..per_commit)
            .map(|_| {
                i += 1;
                (key(i.wrapping_mul(2_654_435_761) % 1_000_000), value(&mut seed))
            })
            .collect();
        let t = Instant::now();
        e.commit(&batch, true);
        lat.push(t.elapsed());
        writes += per_commit as u64;
    }
    let el = start.elapsed().as_secs_f64();
    lat.sort();
    println!(
        "{} durable, {per_commit:>3} writes/commit: {:>8.0} writes/s, {:>6.0} commits/s, commit p50 {:.0} us p99 {:.0} us",
        E::NAME,
        writes as f64 / el,
        lat.len() as f64 / el,
        us(pct(&lat, 0.5)),
        us(pct(&lat, 0.99))
    );
}

/// (d) one write per non-durable commit, an explicit sync every 100 ms.
pub fn interval<E: Engine>(dir: &Path, secs: f64) {
    let mut e = E::open(dir);
    let mut seed = 7u64;
    let mut writes = 0u64;
    let mut syncs = Vec::new();
    let mut last = Instant::now();
    let start = Instant::now();
    let mut i = 0u64;
    while start.elapsed().as_secs_f64() < secs {
        i += 1;
        let item = [(key(i.wrapping_mul(2_654_435_761) % 1_000_000), value(&mut seed))];
        e.commit(&item, false);
        writes += 1;
        if last.elapsed() >= Duration::from_millis(100) {
            let t = Instant::now();
            e.sync();
            syncs.push(t.elapsed());
            last = Instant::now();
        }
    }
    e.sync();
    let el = start.elapsed().as_secs_f64();
    syncs.sort();
    println!(
        "{} non-durable single writes + sync every 100 ms: {:.0} writes/s, sync p50 {:.0} us p99 {:.0} us",
        E::NAME,
        writes as f64 / el,
        us(pct(&syncs, 0.5)),
        us(pct(&syncs, 0.99))
    );
}
