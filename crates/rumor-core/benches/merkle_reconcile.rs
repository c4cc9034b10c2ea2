//! Merkle reconciliation at a million keys: round trips and bytes of the
//! Merkle path against sending the full state.
//!
//! Run: `cargo bench -p rumor-core --bench merkle_reconcile`
//! (plain `main`, prints a table; `KEYS=...` overrides the key count).

use std::time::Instant;

use rumor_core::kv::{KvConfig, KvStore, MerkleSync, Record, SyncResult};

const PHYSICAL: u64 = 1_700_000_000_000_000;

fn key(i: usize) -> String {
    format!("service/{i:08}/config")
}

fn run(a: &KvStore, b: &KvStore) -> SyncResult {
    let mut sync = MerkleSync::new();
    while let Some(req) = sync.next_request(a) {
        let resp = b.respond(&req);
        if let Err(e) = sync.handle_response(a, resp) {
            panic!("sync failed: {e}");
        }
    }
    sync.finish()
}

fn main() {
    let n: usize = std::env::var("KEYS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let t = Instant::now();
    // Above the default quota (1,000,000 keys): the bench adds keys to a
    // full store.
    let unbounded = rumor_core::kv::SpaceQuota {
        keys: usize::MAX,
        bytes: usize::MAX,
    };
    let mut a = KvStore::new("node-a", KvConfig::default()).with_quota(unbounded);
    for i in 0..n {
        a.put(PHYSICAL + i as u64, &key(i), vec![b'v'; 32])
            .expect("put");
    }
    while a.poll_change().is_some() {}
    let build = t.elapsed();
    let full: usize = a
        .iter()
        .map(|(k, e)| {
            Record {
                key: k.to_owned(),
                entry: e.clone(),
            }
            .wire_size()
        })
        .sum();
    println!(
        "keys {n}, depth {}, buckets {}, built in {:.2?} ({:.0} ns/put incl. Merkle update)",
        a.merkle().depth(),
        a.merkle().buckets(),
        build,
        build.as_nanos() as f64 / n as f64
    );
    println!("full state: {full} bytes ({} records)", a.len());
    println!();
    println!(
        "{:<22} {:>5} {:>10} {:>10} {:>10} {:>12} {:>10}",
        "difference", "RTs", "req B", "resp B", "total B", "full/merkle", "sync time"
    );

    let later = PHYSICAL + n as u64 + 1;
    let change = move |b: &mut KvStore, count: usize| {
        for i in 0..count {
            b.put(later, &key(i * (n / count)), b"changed".to_vec())
                .expect("put");
        }
    };
    type Edit = Box<dyn Fn(&mut KvStore)>;
    let cases: Vec<(&str, Edit)> = vec![
        ("none", Box::new(|_| {})),
        ("1 key changed", Box::new(move |b| change(b, 1))),
        (
            "1 key deleted",
            Box::new(move |b| {
                b.delete(later, &key(n / 3)).expect("delete");
            }),
        ),
        (
            "1 key added",
            Box::new(move |b| {
                b.put(later, "brand/new/key", b"x".to_vec()).expect("put");
            }),
        ),
        ("10 keys changed", Box::new(move |b| change(b, 10))),
        ("100 keys changed", Box::new(move |b| change(b, 100))),
        ("1000 keys changed", Box::new(move |b| change(b, 1000))),
    ];
    for (name, edit) in cases {
        let mut b = a.clone();
        edit(&mut b);
        let t = Instant::now();
        let result = run(&a, &b);
        let took = t.elapsed();
        let s = result.stats;
        let total = s.request_bytes + s.response_bytes;
        println!(
            "{:<22} {:>5} {:>10} {:>10} {:>10} {:>11.0}x {:>10.2?}",
            name,
            s.round_trips,
            s.request_bytes,
            s.response_bytes,
            total,
            full as f64 / total as f64,
            took
        );
        // Repair and check convergence.
        let mut a2 = a.clone();
        let (recv, send) = (result.received.len(), result.send.len());
        for r in result.received {
            a2.apply_remote(later, r.key.as_bytes(), r.entry);
        }
        for r in result.send {
            b.apply_remote(later, r.key.as_bytes(), r.entry);
        }
        assert_eq!(a2.root(), b.root(), "roots differ after repair");
        assert!(recv + send >= 1 || name == "none");
    }
}
