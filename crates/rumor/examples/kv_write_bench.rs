//! Benchmark: durable key-space writes through the library, and what a data
//! dir of many keys costs on disk and at start. Benchmarks, not tests
//! (bench/durability/README.md has the commands and docs/benchmarks.md
//! "Durable state" the numbers).
//!
//! ```text
//! # writes/s and p50/p99 of kv_put from 1, 16, 128 tasks, each mode for SECS:
//! # no data dir (memory), sync always, sync interval(100ms)
//! cargo run --release -p rumor --example kv_write_bench -- writes [SECS]
//! # fill DIR (node NAME) with KEYS keys of 100 B; prints disk bytes per key.
//! # import (default): kv_import pages of 10,000, one commit each; put: 256
//! # concurrent kv_put, group commits of a few hundred
//! cargo run --release -p rumor --example kv_write_bench -- fill DIR NAME KEYS [import|put]
//! # time the parts of a restore from DIR: engine read, decode, key-space
//! # restore (Merkle tree included), the Merkle tree alone, a whole start
//! cargo run --release -p rumor --example kv_write_bench -- restore DIR NAME
//! # the HTTP write loop of bench/durability/run.py: CLIENTS keep-alive
//! # connections PUTting to a rumor agent (or etcd's JSON gateway) for SECS
//! cargo run --release -p rumor --example kv_write_bench -- http 127.0.0.1:PORT rumor|etcd CLIENTS SECS
//! ```
//!
//! Each writer task overwrites its own 4,096 keys (`bench/t042/k00001234`, 20
//! bytes) round-robin with 100-byte values, so the key space stays under
//! the default quota whatever the rate; every write is awaited before the
//! next. The node binds 127.0.0.1 and joins nobody.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rumor::core::codec::decode_entry;
use rumor::core::kv::hash::hash_bytes;
use rumor::core::kv::merkle::{MerkleTree, DEFAULT_DEPTH};
use rumor::core::kv::{KvConfig, KvStore};
use rumor::storage::Store;
use rumor::{Node, Profile, StorageOptions, SyncMode};

/// Keys each writer task cycles through.
const KEYS_PER_TASK: usize = 4096;
/// Bytes of every value written.
const VALUE_LEN: usize = 100;

/// Where a run keeps its data.
#[derive(Clone, Copy, Debug)]
enum Durability {
    Memory,
    Always,
    Interval(Duration),
}

impl Durability {
    fn label(self) -> String {
        match self {
            Durability::Memory => "memory (no data dir)".into(),
            Durability::Always => "sync always".into(),
            Durability::Interval(d) => format!("sync interval({} ms)", d.as_millis()),
        }
    }
}

fn loopback() -> std::net::SocketAddr {
    "127.0.0.1:0".parse().expect("a socket address")
}

/// A fresh directory under the system temp dir.
fn temp_dir(tag: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    std::env::temp_dir().join(format!(
        "rumor-kvbench-{tag}-{}-{nanos}",
        std::process::id()
    ))
}

/// The `q` quantile of sorted `xs` (microseconds), in milliseconds.
fn quantile_ms(xs: &[u32], q: f64) -> f64 {
    if xs.is_empty() {
        return f64::NAN;
    }
    let i = ((xs.len() - 1) as f64 * q).round() as usize;
    f64::from(xs[i]) / 1000.0
}

fn value(i: usize) -> Vec<u8> {
    let mut v = format!("{i:020}").into_bytes();
    v.resize(VALUE_LEN, b'v');
    v
}

/// One run: `tasks` writers for `secs` against a fresh node; returns
/// (writes, errors, sorted latencies in µs, elapsed).
async fn run(
    mode: Durability,
    tasks: usize,
    secs: f64,
) -> Result<(usize, usize, Vec<u32>, f64), rumor::Error> {
    let dir = temp_dir("w");
    let mut builder = Node::builder()
        .name("bench")
        .bind(loopback())
        .profile(Profile::Local);
    match mode {
        Durability::Memory => {}
        Durability::Always => builder = builder.storage(StorageOptions::new(&dir)),
        Durability::Interval(d) => {
            builder = builder.storage(StorageOptions::new(&dir).sync(SyncMode::Interval(d)))
        }
    }
    let node = Arc::new(builder.start().await?);
    let value = Arc::new(value(0));
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(secs);
    let mut handles = Vec::new();
    for t in 0..tasks {
        let node = node.clone();
        let value = value.clone();
        handles.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(1 << 16);
            let mut errors = 0usize;
            let mut i = 0usize;
            while Instant::now() < end {
                let key = format!("bench/t{t:03}/k{:08}", i % KEYS_PER_TASK);
                let t0 = Instant::now();
                match node.kv_put(key, value.as_slice()).await {
                    Ok(()) => lat.push(t0.elapsed().as_micros().min(u128::from(u32::MAX)) as u32),
                    Err(_) => errors += 1,
                }
                i += 1;
            }
            (lat, errors)
        }));
    }
    let (mut lat, errors) = gather(handles).await?;
    let elapsed = start.elapsed().as_secs_f64();
    if let Ok(node) = Arc::try_unwrap(node) {
        node.shutdown().await?;
    }
    let _ = std::fs::remove_dir_all(&dir);
    lat.sort_unstable();
    Ok((lat.len(), errors, lat, elapsed))
}

async fn writes(secs: f64) -> Result<(), rumor::Error> {
    println!(
        "kv_put of {VALUE_LEN} B values under 20 B keys, each task awaiting each write, {secs} s per cell"
    );
    println!(
        "{:<26} {:>6} {:>12} {:>9} {:>9} {:>7}",
        "mode", "tasks", "writes/s", "p50 ms", "p99 ms", "errors"
    );
    for mode in [
        Durability::Memory,
        Durability::Always,
        Durability::Interval(Duration::from_millis(100)),
    ] {
        for tasks in [1, 16, 128] {
            let (n, errors, lat, elapsed) = run(mode, tasks, secs).await?;
            println!(
                "{:<26} {:>6} {:>12.0} {:>9.3} {:>9.3} {:>7}",
                mode.label(),
                tasks,
                n as f64 / elapsed,
                quantile_ms(&lat, 0.50),
                quantile_ms(&lat, 0.99),
                errors
            );
        }
    }
    Ok(())
}

/// Bytes of the files directly in `dir`: (apparent size, allocated on
/// disk); the engine's file may be sparse.
fn dir_bytes(dir: &Path) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok()?.metadata().ok())
        .filter(|m| m.is_file())
        .fold((0, 0), |(len, used), m| {
            (len + m.len(), used + m.blocks() * 512)
        })
}

/// How `fill` writes its keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FillBy {
    /// `kv_put` from 256 concurrent tasks, sync interval(1 s): each group
    /// commit holds the few hundred writes queued while the last one ran.
    Put,
    /// `kv_import` of pages of 10,000 entries (stamped by a scratch key
    /// space): one commit per page, as a `rumor kv import` of a backup.
    Import,
}

/// Entries per `kv_import` call in [`FillBy::Import`].
const IMPORT_PAGE: usize = 10_000;

/// Write `keys` distinct keys (`bench/key/0000000042`, 20 B) into a data dir.
async fn fill(dir: &Path, name: &str, keys: usize, by: FillBy) -> Result<(), rumor::Error> {
    let sync = match by {
        FillBy::Put => SyncMode::Interval(Duration::from_secs(1)),
        FillBy::Import => SyncMode::Always,
    };
    let node = Arc::new(
        Node::builder()
            .name(name)
            .bind(loopback())
            .profile(Profile::Local)
            .storage(StorageOptions::new(dir).sync(sync))
            .start()
            .await?,
    );
    let key = |i: usize| format!("bench/key/{i:010}");
    let start = Instant::now();
    let mut errors = 0;
    match by {
        FillBy::Put => {
            let tasks = 256;
            let mut handles = Vec::new();
            for t in 0..tasks {
                let node = node.clone();
                handles.push(tokio::spawn(async move {
                    let mut errors = 0usize;
                    for i in (t..keys).step_by(tasks) {
                        if node.kv_put(key(i), value(i)).await.is_err() {
                            errors += 1;
                        }
                    }
                    errors
                }));
            }
            for h in handles {
                errors += h.await.map_err(|e| rumor::Error::Task(e.to_string()))?;
            }
        }
        FillBy::Import => {
            let mut scratch = KvStore::new(name, KvConfig::default());
            let now = || {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_micros() as u64)
                    .unwrap_or(0)
            };
            for first in (0..keys).step_by(IMPORT_PAGE) {
                let mut page = Vec::with_capacity(IMPORT_PAGE);
                for i in first..keys.min(first + IMPORT_PAGE) {
                    match scratch.put(now(), &key(i), value(i)) {
                        Ok(entry) => page.push((key(i), entry)),
                        Err(_) => errors += 1,
                    }
                }
                // The scratch space only stamps; it need not keep anything.
                scratch = KvStore::new(name, KvConfig::default());
                let done = node.kv_import(page).await?;
                errors += done.refused + done.stale;
            }
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    if let Ok(node) = Arc::try_unwrap(node) {
        node.shutdown().await?;
    }
    let (bytes, used) = dir_bytes(dir);
    println!(
        "filled {} by {by:?} with {keys} keys (20 B keys, {VALUE_LEN} B values) in {elapsed:.1} s ({:.0} writes/s), {errors} errors",
        dir.display(),
        keys as f64 / elapsed
    );
    println!(
        "data dir: {bytes} bytes ({:.1} B per key), {used} bytes allocated ({:.1} B per key)",
        bytes as f64 / keys as f64,
        used as f64 / keys as f64
    );
    Ok(())
}

/// Time the parts of a restore from `dir`, then a whole node start on it.
async fn restore(dir: &Path, name: &str) -> Result<(), rumor::Error> {
    let options = StorageOptions::new(dir);
    let t = Instant::now();
    let (store, loaded) = Store::open(&options)?;
    let engine = t.elapsed();
    drop(store);
    let n = loaded.kv.len();

    let t = Instant::now();
    let kv: Vec<_> = loaded
        .kv
        .into_iter()
        .filter_map(|(k, b)| Some((k, decode_entry(&b).ok()?)))
        .collect();
    let decode = t.elapsed();

    // What the core's resume does with the key space: map, hash index,
    // tombstone index and Merkle tree.
    let mut space = KvStore::new(name, KvConfig::default());
    let copy = kv.clone();
    let t = Instant::now();
    let (_, refused) = space.restore_all(copy);
    let resume = t.elapsed();
    let root = space.root();
    drop(space);
    // The same, one key at a time (how resume worked before restore_all),
    // for the ratio in one run.
    let mut one_by_one = KvStore::new(name, KvConfig::default());
    let copy = kv.clone();
    let t = Instant::now();
    for (key, entry) in copy {
        let _ = one_by_one.restore(key.as_bytes(), entry);
    }
    let resume_one = t.elapsed();
    assert_eq!(
        one_by_one.root(),
        root,
        "both ways build the same key space"
    );
    drop(one_by_one);

    // The Merkle tree's own share: hashing each key and entry (the store
    // keeps both per key), and the tree inserts alone.
    let t = Instant::now();
    let hashes: Vec<(u64, u64)> = kv
        .iter()
        .map(|(k, e)| (hash_bytes(k.as_bytes()), e.digest()))
        .collect();
    let hashing = t.elapsed();
    let t = Instant::now();
    let mut tree = MerkleTree::new(DEFAULT_DEPTH);
    for &(h, d) in &hashes {
        tree.insert(h, d);
    }
    let inserts = t.elapsed();
    let same = tree.root() == root;
    drop(kv);

    let t = Instant::now();
    let node = Node::builder()
        .name(name)
        .bind(loopback())
        .profile(Profile::Local)
        .storage(options)
        .start()
        .await?;
    let start = t.elapsed();
    let held = node.kv_export_page(None, 1).await?.len();
    node.shutdown().await?;

    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "restore of {n} keys from {} ({refused} refused)",
        dir.display()
    );
    println!(
        "  engine: Store::open (integrity check) + read of every row  {:8.1} ms",
        ms(engine)
    );
    println!(
        "  decode of every entry                                      {:8.1} ms",
        ms(decode)
    );
    println!(
        "  key-space restore in bulk (map, indexes, Merkle tree)      {:8.1} ms",
        ms(resume)
    );
    println!(
        "  the same one key at a time (before restore_all)            {:8.1} ms",
        ms(resume_one)
    );
    println!(
        "    of which: key hash + entry digest of every key           {:8.1} ms",
        ms(hashing)
    );
    println!(
        "    of which: Merkle tree inserts alone                      {:8.1} ms (root matches: {same})",
        ms(inserts)
    );
    println!(
        "  whole Node start with the data dir                         {:8.1} ms (answers: {})",
        ms(start),
        held > 0
    );
    Ok(())
}

/// Which server's write endpoint the HTTP client drives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Server {
    /// `PUT /v1/kv/KEY`, the value as the body.
    Rumor,
    /// etcd's JSON gateway: `POST /v3/kv/put`, key and value in base64.
    Etcd,
}

/// Standard base64 with padding (etcd's JSON gateway wants it; two fixed
/// strings per request do not justify a dependency).
fn base64(bytes: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ABC[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// One request in HTTP/1.1 on a keep-alive connection.
fn request(server: Server, addr: &str, key: &str, value: &[u8]) -> Vec<u8> {
    let (line, body) = match server {
        Server::Rumor => (format!("PUT /v1/kv/{key} HTTP/1.1"), value.to_vec()),
        Server::Etcd => (
            "POST /v3/kv/put HTTP/1.1".to_owned(),
            format!(
                "{{\"key\":\"{}\",\"value\":\"{}\"}}",
                base64(key.as_bytes()),
                base64(value)
            )
            .into_bytes(),
        ),
    };
    let mut req = format!(
        "{line}\r\nHost: {addr}\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(&body);
    req
}

/// Read one response from `conn` (buffered in `buf`); its status. Only
/// `Content-Length` bodies: both servers send them for these answers.
async fn response(
    conn: &mut tokio::net::TcpStream,
    buf: &mut Vec<u8>,
) -> Result<u16, std::io::Error> {
    use tokio::io::AsyncReadExt;
    let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned());
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = std::str::from_utf8(&buf[..end]).map_err(|_| bad("head not UTF-8"))?;
            let status = head
                .split(' ')
                .nth(1)
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| bad("no status"))?;
            let len: usize = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().ok())?
                })
                .ok_or_else(|| bad("no Content-Length"))?;
            let total = end + 4 + len;
            while buf.len() < total {
                if conn.read_buf(buf).await? == 0 {
                    return Err(bad("closed mid-body"));
                }
            }
            buf.drain(..total);
            return Ok(status);
        }
        if conn.read_buf(buf).await? == 0 {
            return Err(bad("closed"));
        }
    }
}

/// `clients` keep-alive connections to `addr` for `secs`, each awaiting
/// every answer: one JSON line with writes/s, p50/p99 (ms) and errors.
async fn http(addr: &str, server: Server, clients: usize, secs: f64) -> Result<(), rumor::Error> {
    use tokio::io::AsyncWriteExt;
    let end = Instant::now() + Duration::from_secs_f64(secs);
    let start = Instant::now();
    let mut handles = Vec::new();
    for c in 0..clients {
        let addr = addr.to_owned();
        handles.push(tokio::spawn(async move {
            let value = value(c);
            let mut lat: Vec<u32> = Vec::with_capacity(1 << 16);
            let mut errors = 0usize;
            let mut conn = None;
            let mut buf = Vec::with_capacity(4096);
            let mut i = 0usize;
            while Instant::now() < end {
                let key = format!("bench/c{c:03}/k{:08}", i % KEYS_PER_TASK);
                i += 1;
                if conn.is_none() {
                    buf.clear();
                    conn = tokio::net::TcpStream::connect(&addr).await.ok();
                    if let Some(s) = &conn {
                        let _ = s.set_nodelay(true);
                    }
                }
                let Some(s) = conn.as_mut() else {
                    errors += 1;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                let req = request(server, &addr, &key, &value);
                let t0 = Instant::now();
                let answer = match s.write_all(&req).await {
                    Ok(()) => response(s, &mut buf).await,
                    Err(e) => Err(e),
                };
                match answer {
                    Ok(200) => lat.push(t0.elapsed().as_micros().min(u128::from(u32::MAX)) as u32),
                    Ok(_) => errors += 1,
                    Err(_) => {
                        errors += 1;
                        conn = None;
                    }
                }
            }
            (lat, errors)
        }));
    }
    let (mut lat, errors) = gather(handles).await?;
    let elapsed = start.elapsed().as_secs_f64();
    lat.sort_unstable();
    println!(
        "{{\"writes_s\": {:.1}, \"p50_ms\": {:.3}, \"p99_ms\": {:.3}, \"errors\": {errors}}}",
        lat.len() as f64 / elapsed,
        quantile_ms(&lat, 0.50),
        quantile_ms(&lat, 0.99)
    );
    Ok(())
}

fn usage() -> ! {
    eprintln!(
        "usage: kv_write_bench writes [SECS] | fill DIR NAME KEYS [import|put] | restore DIR NAME | http 127.0.0.1:PORT rumor|etcd CLIENTS SECS"
    );
    std::process::exit(2)
}

#[tokio::main]
async fn main() -> Result<(), rumor::Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| args.get(i).map(String::as_str);
    match arg(0) {
        None | Some("writes") => {
            let secs = arg(1).and_then(|s| s.parse().ok()).unwrap_or(5.0);
            writes(secs).await
        }
        Some("fill") => {
            let (Some(dir), Some(name), Some(keys)) =
                (arg(1), arg(2), arg(3).and_then(|s| s.parse().ok()))
            else {
                usage()
            };
            let by = match arg(4) {
                None | Some("import") => FillBy::Import,
                Some("put") => FillBy::Put,
                Some(_) => usage(),
            };
            fill(Path::new(dir), name, keys, by).await
        }
        Some("http") => {
            let server = match arg(2) {
                Some("rumor") => Server::Rumor,
                Some("etcd") => Server::Etcd,
                _ => usage(),
            };
            let (Some(addr), Some(clients), Some(secs)) = (
                arg(1),
                arg(3).and_then(|s| s.parse().ok()),
                arg(4).and_then(|s| s.parse().ok()),
            ) else {
                usage()
            };
            http(addr, server, clients, secs).await
        }
        Some("restore") => {
            let (Some(dir), Some(name)) = (arg(1), arg(2)) else {
                usage()
            };
            restore(Path::new(dir), name).await
        }
        Some(_) => usage(),
    }
}

/// The latencies (µs) and error counts of every writer task, together.
async fn gather(
    handles: Vec<tokio::task::JoinHandle<(Vec<u32>, usize)>>,
) -> Result<(Vec<u32>, usize), rumor::Error> {
    let mut lat = Vec::new();
    let mut errors = 0;
    for h in handles {
        let (l, e) = h.await.map_err(|e| rumor::Error::Task(e.to_string()))?;
        lat.extend(l);
        errors += e;
    }
    Ok((lat, errors))
}
