//! The data directory (rumor::storage): round trips, reopen, kill -9 during
//! acknowledged writes, damaged files, a locked, unwritable or full
//! directory. Benchmarks at the end are `#[ignore]`d.

use rumor::storage::{Batch, Meta, StorageError, StorageOptions, Store, SyncMode, Writer};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A scratch directory removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let p = std::env::temp_dir().join(format!("rumor-storage-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Scratch(p)
    }
    fn data(&self) -> PathBuf {
        self.0.join("data")
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn open(dir: &Path) -> Result<(Store, rumor::storage::Loaded), StorageError> {
    Store::open(&StorageOptions::new(dir))
}

fn put(key: &str, value: &[u8]) -> Batch {
    Batch {
        kv_put: vec![(key.to_string(), value.to_vec())],
        ..Batch::default()
    }
}

fn meta(name: &str, n: u64) -> Meta {
    let mut m = Meta::default();
    m.node_name = name.into();
    m.incarnation = n;
    m.state_version = n + 1;
    m.event_ltime = n + 2;
    m.query_ltime = n + 3;
    m
}

#[test]
fn every_table_round_trips() {
    let s = Scratch::new("round-trip");
    let (store, loaded) = open(&s.data()).unwrap();
    assert!(loaded.created);
    assert!(loaded.kv.is_empty() && loaded.state.is_empty());
    assert_eq!(loaded.meta, Meta::default());
    let w = store.spawn_writer();
    rt().block_on(async {
        w.submit(Batch {
            kv_put: vec![("a".into(), b"1".to_vec()), ("b".into(), vec![0, 255])],
            state_put: vec![
                ("role".into(), Some("db".into()), 3),
                ("gone".into(), None, 4),
            ],
            meta: Some(meta("n1", 7)),
            ..Batch::default()
        })
        .await
        .unwrap();
        w.submit(Batch {
            kv_put: vec![("c".into(), Vec::new())],
            kv_remove: vec!["a".into()],
            ..Batch::default()
        })
        .await
        .unwrap();
        w.close().await.unwrap();
    });
    let (_store, loaded) = open(&s.data()).unwrap();
    assert!(!loaded.created);
    assert_eq!(
        loaded.kv,
        vec![("b".to_string(), vec![0, 255]), ("c".to_string(), vec![])]
    );
    assert_eq!(
        loaded.state,
        vec![
            ("gone".to_string(), None, 4),
            ("role".to_string(), Some("db".to_string()), 3)
        ]
    );
    assert_eq!(loaded.meta, meta("n1", 7));
}

/// Everything acknowledged is there after the writer is dropped (no
/// close), in both sync modes.
#[test]
fn reopen_after_drop_sees_every_acknowledged_write() {
    for sync in [
        SyncMode::Always,
        SyncMode::Interval(Duration::from_millis(100)),
    ] {
        let s = Scratch::new("reopen");
        let (store, _) = Store::open(&StorageOptions::new(s.data()).sync(sync)).unwrap();
        let w = store.spawn_writer();
        rt().block_on(async {
            for i in 0..200 {
                w.submit(put(&format!("k{i:03}"), &[i as u8]))
                    .await
                    .unwrap();
            }
        });
        drop(w);
        let loaded = open_when_unlocked(&s.data());
        assert_eq!(loaded.kv.len(), 200, "{sync:?}");
        assert_eq!(loaded.kv[199], ("k199".to_string(), vec![199]));
    }
}

/// Opens `dir`, waiting (bounded) for a dropped writer to release it.
fn open_when_unlocked(dir: &Path) -> rumor::storage::Loaded {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match open(dir) {
            Ok((_, loaded)) => return loaded,
            Err(StorageError::Locked { .. }) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20))
            }
            Err(e) => panic!("{e}"),
        }
    }
}

/// Many submitters at once: each gets its own acknowledgement, and the
/// writer groups them into fewer commits than batches (all land).
#[test]
fn concurrent_submitters_all_land() {
    let s = Scratch::new("concurrent");
    let (store, _) = open(&s.data()).unwrap();
    let w = store.spawn_writer();
    rt().block_on(async {
        let mut tasks = Vec::new();
        for t in 0..16 {
            let w = w.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..50 {
                    w.submit(put(&format!("t{t:02}/{i:02}"), b"v"))
                        .await
                        .unwrap();
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        w.close().await.unwrap();
    });
    let (_s, loaded) = open(&s.data()).unwrap();
    assert_eq!(loaded.kv.len(), 16 * 50);
}

#[test]
fn close_fails_later_submits() {
    let s = Scratch::new("closed");
    let (store, _) = open(&s.data()).unwrap();
    let w = store.spawn_writer();
    let w2 = w.clone();
    rt().block_on(async {
        w.close().await.unwrap();
        assert!(matches!(
            w2.submit(put("a", b"1")).await,
            Err(StorageError::Closed)
        ));
    });
    // The file is released as soon as close returns.
    open(&s.data()).unwrap();
}

#[test]
fn second_open_in_this_process_is_locked() {
    let s = Scratch::new("locked");
    let (_first, _) = open(&s.data()).unwrap();
    let err = open(&s.data()).unwrap_err();
    assert!(matches!(err, StorageError::Locked { .. }), "{err}");
    let line = err.to_string();
    assert!(
        line.contains(&s.data().display().to_string()) && !line.contains('\n'),
        "{line}"
    );
}

#[test]
fn open_in_another_process_is_locked() {
    let s = Scratch::new("locked-xproc");
    let mut child = child("hold", &s.data());
    let out = BufReader::new(child.stdout.take().unwrap());
    // The test harness prints its own lines first; bounded by the child's
    // own 60 s wait.
    let said_open = out
        .lines()
        .map_while(Result::ok)
        .any(|l| l.contains("child-has-it-open"));
    assert!(said_open, "the child never opened the store");
    let err = open(&s.data());
    let _ = child.kill();
    let _ = child.wait();
    assert!(matches!(err, Err(StorageError::Locked { .. })), "{err:?}");
    // And free again once the holder is gone.
    open(&s.data()).unwrap();
}

/// Root ignores permission bits, so the directory is made impossible to
/// create instead: its parent is a regular file.
#[test]
fn a_dir_under_a_regular_file_is_not_writable() {
    let s = Scratch::new("not-writable");
    let file = s.0.join("plain-file");
    std::fs::write(&file, b"x").unwrap();
    let dir = file.join("data");
    let err = open(&dir).unwrap_err();
    assert!(matches!(err, StorageError::NotWritable { .. }), "{err}");
    assert!(err.to_string().contains("plain-file"), "{err}");
}

/// A file of the wrong kind where the database should be.
#[test]
fn a_foreign_file_is_corrupt() {
    let s = Scratch::new("foreign");
    std::fs::create_dir_all(s.data()).unwrap();
    std::fs::write(s.data().join("rumor.redb"), vec![7u8; 8192]).unwrap();
    let err = open(&s.data()).unwrap_err();
    assert!(matches!(err, StorageError::Corrupt { .. }), "{err}");
    let line = err.to_string();
    assert!(
        line.contains("rumor.redb") && line.contains("move the data dir aside"),
        "{line}"
    );
}

/// Writes a store with some data, then damages copies of its file:
/// truncations at many offsets and byte flips all over. Each open returns
/// `Corrupt` or recovers with intact data (a flip in free space, or in one
/// of redb's two header slots), never a panic.
#[test]
fn truncated_or_flipped_files_are_corrupt_or_recovered_never_a_panic() {
    let s = Scratch::new("damage");
    let (store, _) = open(&s.data()).unwrap();
    let w = store.spawn_writer();
    rt().block_on(async {
        for i in 0..20 {
            let batch = Batch {
                kv_put: (0..100)
                    .map(|j| (format!("key/{i:02}/{j:03}"), vec![j as u8; 100]))
                    .collect(),
                state_put: vec![(format!("s{i}"), Some("v".into()), i)],
                meta: Some(meta("n", i)),
                ..Batch::default()
            };
            w.submit(batch).await.unwrap();
        }
        w.close().await.unwrap();
    });
    let good = std::fs::read(s.data().join("rumor.redb")).unwrap();
    let len = good.len();
    let mut damaged: Vec<(String, Vec<u8>)> = Vec::new();
    for cut in [
        0,
        1,
        100,
        511,
        512,
        4095,
        4096,
        4097,
        len / 3,
        len / 2,
        len - 4097,
        len - 1,
    ] {
        damaged.push((format!("truncated at {cut}"), good[..cut.min(len)].to_vec()));
    }
    let mut x = 0x2545_f491_4f6c_dd1du64;
    for n in 0..40 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let mut bad = good.clone();
        let at = (x % len as u64) as usize;
        bad[at] ^= 0xff;
        damaged.push((format!("flip {n} at {at}"), bad));
    }
    let (mut corrupt, mut recovered) = (0, 0);
    for (what, bytes) in damaged {
        let dir = s.0.join("copy");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("rumor.redb"), &bytes).unwrap();
        match open(&dir) {
            Err(StorageError::Corrupt { .. }) => corrupt += 1,
            Ok((_, loaded)) => {
                // Recovered: only intact data, never a damaged value.
                for (k, v) in &loaded.kv {
                    let j: u8 = k[k.len() - 3..].parse().unwrap();
                    assert_eq!(v, &vec![j; 100], "{what}: {k} damaged");
                }
                recovered += 1;
            }
            Err(e) => panic!("{what}: unexpected {e:?}"),
        }
    }
    eprintln!("damaged files: {corrupt} corrupt, {recovered} recovered");
    assert!(corrupt > 0);
}

/// kill -9 of a process in the middle of acknowledged writes: every batch
/// it acknowledged (printed after its future resolved) is on disk.
#[test]
fn kill_9_loses_no_acknowledged_write() {
    for round in 0..3u64 {
        let s = Scratch::new(&format!("kill9-{round}"));
        let mut child = child("write", &s.data());
        let out = BufReader::new(child.stdout.take().unwrap());
        // A "random" point: 50 to 400 acknowledgements in.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos() as u64;
        let stop_after = 50 + (nanos ^ (round * 7919)) % 350;
        let mut acked = Vec::new();
        for line in out.lines() {
            let line = line.unwrap();
            if let Some(id) = line.strip_prefix("ack ") {
                acked.push(id.parse::<u64>().unwrap());
                if acked.len() as u64 >= stop_after {
                    break;
                }
            }
        }
        child.kill().unwrap(); // SIGKILL
        let _ = child.wait();
        assert!(acked.len() as u64 >= stop_after, "child stopped early");
        let (_store, loaded) = open(&s.data()).unwrap();
        let stored: std::collections::HashSet<_> =
            loaded.kv.iter().map(|(k, _)| k.clone()).collect();
        for id in &acked {
            assert!(
                stored.contains(&format!("batch/{id:08}/0")),
                "acknowledged batch {id} lost"
            );
            assert!(
                stored.contains(&format!("batch/{id:08}/3")),
                "acknowledged batch {id} torn"
            );
        }
    }
}

/// Re-executes this test binary as a child that runs [`child_process`].
fn child(mode: &str, dir: &Path) -> std::process::Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_process",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("RUMOR_STORAGE_CHILD", mode)
        .env("RUMOR_STORAGE_DIR", dir)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Not a test on its own: the body of [`child`] (does nothing without its
/// environment). `write`: submits batches from 8 tasks forever, printing
/// `ack ID` as each resolves. `hold`: opens the store, prints `child-has-it-open`, waits.
#[test]
fn child_process() {
    let (Ok(mode), Ok(dir)) = (
        std::env::var("RUMOR_STORAGE_CHILD"),
        std::env::var("RUMOR_STORAGE_DIR"),
    ) else {
        return;
    };
    let (store, _) = open(Path::new(&dir)).unwrap();
    if mode == "hold" {
        println!("child-has-it-open");
        std::io::stdout().flush().unwrap();
        std::thread::sleep(Duration::from_secs(60));
        return;
    }
    let w = store.spawn_writer();
    rt().block_on(async {
        let mut tasks = Vec::new();
        for t in 0..8u64 {
            let w = w.clone();
            tasks.push(tokio::spawn(async move {
                for n in 0.. {
                    let id = n * 8 + t;
                    let batch = Batch {
                        kv_put: (0..4)
                            .map(|j| (format!("batch/{id:08}/{j}"), vec![1; 100]))
                            .collect(),
                        ..Batch::default()
                    };
                    w.submit(batch).await.unwrap();
                    let mut out = std::io::stdout().lock();
                    writeln!(out, "ack {id}").unwrap();
                    out.flush().unwrap();
                }
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
    });
}

/// A tmpfs of a few hundred KiB, mounted for one test (root only).
struct SmallFs(PathBuf);

impl SmallFs {
    fn mount(at: &Path, size: &str) -> Option<SmallFs> {
        std::fs::create_dir_all(at).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| SmallFs(at.to_path_buf()))
    }
    fn resize(&self, size: &str) {
        let ok = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.0)
            .status()
            .unwrap();
        assert!(ok.success());
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// A full disk: commits fail with `Full`, the writer says unhealthy, keeps
/// running; once there is room again every submitted write lands,
/// including the failed ones.
#[test]
fn full_disk_fails_writes_then_converges() {
    let s = Scratch::new("full");
    let Some(fs) = SmallFs::mount(&s.0.join("fs"), "2m") else {
        eprintln!("SKIPPED: cannot mount a tmpfs here (needs root)");
        return;
    };
    let dir = fs.0.join("data");
    let (store, _) = open(&dir).unwrap();
    let w = store.spawn_writer();
    let runtime = rt();
    let mut submitted = 0;
    let mut first_full = None;
    runtime.block_on(async {
        for i in 0..2000 {
            let r = w.submit(put(&format!("k{i:05}"), &[9; 1000])).await;
            submitted = i + 1;
            match r {
                Ok(()) => {}
                Err(e) => {
                    assert!(e.is_full(), "{e}");
                    assert!(e.to_string().contains("rumor.redb"), "{e}");
                    first_full = Some(i);
                    break;
                }
            }
        }
    });
    assert!(first_full.is_some(), "2 MiB never filled");
    assert!(!w.healthy());
    // Still full: one more write fails too, and the writer keeps going.
    let again = runtime.block_on(w.submit(put("again", b"x")));
    assert!(matches!(again, Err(StorageError::Full { .. })), "{again:?}");
    fs.resize("64m");
    // The writer retries on its own timer: healthy again with no new batch.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !w.healthy() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(w.healthy(), "no successful retry within 30 s");
    let after = runtime.block_on(w.submit(put("after", b"y")));
    assert!(after.is_ok(), "{after:?}");
    assert!(w.healthy());
    runtime.block_on(w.close()).unwrap();
    let (_store, loaded) = open(&dir).unwrap();
    let keys: std::collections::HashSet<_> = loaded.kv.iter().map(|(k, _)| k.as_str()).collect();
    for i in 0..submitted {
        assert!(keys.contains(format!("k{i:05}").as_str()), "k{i:05} lost");
    }
    assert!(keys.contains("again") && keys.contains("after"));
}

/// A full disk at open: `Full`, naming the file.
#[test]
fn open_on_a_full_disk_is_full() {
    let s = Scratch::new("full-open");
    let Some(fs) = SmallFs::mount(&s.0.join("fs"), "64k") else {
        eprintln!("SKIPPED: cannot mount a tmpfs here (needs root)");
        return;
    };
    std::fs::write(fs.0.join("filler"), vec![0u8; 64 * 1024]).unwrap_or(());
    let err = open(&fs.0.join("data")).unwrap_err();
    assert!(err.is_full(), "{err:?}");
}

// ---- benchmarks (cargo test -p rumor --test storage -- --ignored --nocapture)

fn bench_writes(sync: SyncMode, submitters: usize, secs: f64) {
    let s = Scratch::new("bench-writes");
    let (store, _) = Store::open(&StorageOptions::new(s.data()).sync(sync)).unwrap();
    let w = store.spawn_writer();
    let (count, mut lat) = rt().block_on(async {
        let start = Instant::now();
        let mut tasks = Vec::new();
        for t in 0..submitters {
            let w: Writer = w.clone();
            tasks.push(tokio::spawn(async move {
                let mut lat = Vec::new();
                let mut i = 0u64;
                while start.elapsed().as_secs_f64() < secs {
                    let t0 = Instant::now();
                    w.submit(put(&format!("kv/{t:03}/{:010}", i % 100_000), &[7; 100]))
                        .await
                        .unwrap();
                    lat.push(t0.elapsed());
                    i += 1;
                }
                lat
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.unwrap());
        }
        (all.len(), all)
    });
    rt().block_on(w.close()).unwrap();
    lat.sort();
    let p = |q: f64| lat[((lat.len() - 1) as f64 * q) as usize].as_secs_f64() * 1e3;
    println!(
        "writer {sync:?} {submitters:>3} submitters: {:>7.0} acknowledged writes/s, p50 {:.2} ms, p99 {:.2} ms",
        count as f64 / secs,
        p(0.5),
        p(0.99)
    );
}

#[test]
#[ignore = "benchmark"]
fn bench_writer_throughput() {
    for sync in [
        SyncMode::Always,
        SyncMode::Interval(Duration::from_millis(100)),
    ] {
        for n in [1, 16, 128] {
            bench_writes(sync, n, 3.0);
        }
    }
}

#[test]
#[ignore = "benchmark"]
fn bench_open_and_load_1m_keys() {
    let s = Scratch::new("bench-load");
    let (store, _) = open(&s.data()).unwrap();
    let w = store.spawn_writer();
    rt().block_on(async {
        for chunk in 0..100u64 {
            let batch = Batch {
                kv_put: (0..10_000u64)
                    .map(|i| {
                        (
                            format!("kv/key-{:013}", chunk * 10_000 + i),
                            vec![(i % 251) as u8; 100],
                        )
                    })
                    .collect(),
                ..Batch::default()
            };
            w.submit(batch).await.unwrap();
        }
        w.close().await.unwrap();
    });
    let bytes = std::fs::metadata(s.data().join("rumor.redb"))
        .unwrap()
        .len();
    let t = Instant::now();
    let (_store, loaded) = open(&s.data()).unwrap();
    println!(
        "Store::open + load of {} keys: {:.0} ms; file {:.1} B/key",
        loaded.kv.len(),
        t.elapsed().as_secs_f64() * 1e3,
        bytes as f64 / loaded.kv.len() as f64
    );
    assert_eq!(loaded.kv.len(), 1_000_000);
}
