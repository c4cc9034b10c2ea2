//! A data dir keeps what was acknowledged: agents killed with SIGKILL
//! (no leave, no flush) and restarted with their data dirs hold every
//! write their API acknowledged, a restarted agent catches up by moving
//! only what changed while it was down, and a damaged or busy data dir is
//! one clear line, never a panic.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{agent, fixed_port, temp_dir, wait_until, Agent, DEADLINE};

/// Start (or restart) `name` on `port` with `dir` as its data dir.
fn start(name: &str, port: u16, dir: &Path, join: &[&Agent]) -> Agent {
    agent(name)
        .port(port)
        .args(&["--data-dir", dir.to_str().expect("utf-8 path")])
        .join(join)
        .spawn()
}

/// PUT without panicking on a refused connection: the status, or `None`
/// when the agent did not answer (it was killed).
fn put(a: &Agent, key: &str, value: &str) -> Option<u16> {
    put_at(&a.url(""), key, value)
}

/// [`put`] to the agent whose API is at `base` (`http://addr`).
fn put_at(base: &str, key: &str, value: &str) -> Option<u16> {
    let http = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(10))
        .build();
    match http.put(&format!("{base}/v1/kv/{key}")).send_string(value) {
        Ok(r) => Some(r.status()),
        Err(ureq::Error::Status(s, _)) => Some(s),
        Err(_) => None,
    }
}

/// The agent's live keys and values.
fn keys(a: &Agent) -> BTreeMap<String, String> {
    let Some(v) = a.try_get("/v1/kv") else {
        return BTreeMap::new();
    };
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| {
            Some((
                e["key"].as_str()?.to_owned(),
                e["value"].as_str()?.to_owned(),
            ))
        })
        .collect()
}

/// Keep writing `prefix-N` keys to `a` until `stop`; returns what was
/// acknowledged (200) so far, shared.
fn writer(
    a: &Agent,
    prefix: &'static str,
    stop: Arc<AtomicBool>,
) -> (Arc<Mutex<Vec<String>>>, std::thread::JoinHandle<()>) {
    let acked = Arc::new(Mutex::new(Vec::new()));
    let base = a.url("");
    let list = acked.clone();
    let handle = std::thread::spawn(move || {
        for i in 0.. {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            let key = format!("{prefix}-{i}");
            match put_at(&base, &key, &format!("v{i}")) {
                Some(200) => list.lock().expect("lock").push(key),
                Some(_) => {}
                None => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    });
    (acked, handle)
}

fn missing(a: &Agent, acked: &[String]) -> usize {
    let have = keys(a);
    let gone: Vec<&String> = acked.iter().filter(|k| !have.contains_key(*k)).collect();
    if !gone.is_empty() {
        eprintln!(
            "{}: {} of {} missing, e.g. {:?}; holds {}",
            a.name,
            gone.len(),
            acked.len(),
            &gone[..gone.len().min(5)],
            have.len()
        );
    }
    gone.len()
}

#[test]
fn an_agent_killed_mid_writes_keeps_every_acknowledged_write_and_catches_up_only_the_difference() {
    let root = temp_dir("durable-one");
    let dirs: Vec<PathBuf> = ["a", "b", "c"].iter().map(|n| root.join(n)).collect();
    let ports: Vec<u16> = (0..3).map(|_| fixed_port()).collect();
    let a = start("a", ports[0], &dirs[0], &[]);
    let b = start("b", ports[1], &dirs[1], &[&a]);
    let c = start("c", ports[2], &dirs[2], &[&a]);
    wait_until("3 alive", DEADLINE, || {
        a.alive_count() == 3 && c.alive_count() == 3
    });

    // Acknowledged writes streaming into `a` when it is killed.
    let stop = Arc::new(AtomicBool::new(false));
    let (acked, handle) = writer(&a, "w", stop.clone());
    wait_until("200 acknowledged writes", DEADLINE, || {
        acked.lock().expect("lock").len() >= 200
    });
    let mut a = a;
    a.child.kill().expect("SIGKILL a");
    let _ = a.child.wait();
    stop.store(true, Ordering::Relaxed);
    handle.join().expect("writer");
    let acked = acked.lock().expect("lock").clone();
    let a = start("a", ports[0], &dirs[0], &[&b]);
    for x in [&a, &b, &c] {
        wait_until(
            &format!("{} holds all {} acknowledged writes", x.name, acked.len()),
            DEADLINE,
            || missing(x, &acked) == 0,
        );
    }

    // A bulk of keys everywhere, then `b` down while 40 more are written.
    let value = "x".repeat(500);
    for i in 0..1500 {
        assert_eq!(put(&c, &format!("bulk-{i}"), &value), Some(200));
    }
    wait_until("the bulk on b", DEADLINE, || {
        keys(&b).len() >= acked.len() + 1500
    });
    let mut b = b;
    b.child.kill().expect("SIGKILL b");
    let _ = b.child.wait();
    for i in 0..40 {
        assert_eq!(put(&c, &format!("late-{i}"), "while b was down"), Some(200));
    }
    let total = keys(&c).len();
    let b = start("b", ports[1], &dirs[1], &[&c]);
    let restored = keys(&b).len();
    assert!(
        restored >= acked.len() + 1500,
        "b came back with {restored} keys, not the {} it held",
        acked.len() + 1500
    );
    wait_until("b caught up", DEADLINE, || keys(&b).len() == total);
    let applied = b.counter("rumor_kv_applied_total");
    let bytes_in = b.counter("rumor_udp_received_bytes_total")
        + b.counter("rumor_stream_received_bytes_total");
    let bulk_bytes = 1500.0 * value.len() as f64;
    eprintln!(
        "catch-up: {applied} records applied, {bytes_in} bytes in (the bulk is {bulk_bytes} bytes)"
    );
    assert!(
        applied >= 40.0,
        "the 40 late keys arrived as records: {applied}"
    );
    assert!(
        applied < 300.0,
        "only the difference moved, not the bulk: {applied} records"
    );
    assert!(
        bytes_in < bulk_bytes / 4.0,
        "catch-up took {bytes_in} bytes; a full pull moves over {bulk_bytes}"
    );
    let _ = std::fs::remove_dir_all(root);
}

#[test]
fn every_agent_killed_under_load_loses_no_acknowledged_write() {
    let root = temp_dir("durable-all");
    let names = ["a", "b", "c", "d", "e"];
    let ports: Vec<u16> = names.iter().map(|_| fixed_port()).collect();
    let dir = |i: usize| root.join(names[i]);
    let first = start(names[0], ports[0], &dir(0), &[]);
    let mut agents = vec![first];
    for i in 1..names.len() {
        let next = start(names[i], ports[i], &dir(i), &[&agents[0]]);
        agents.push(next);
    }
    wait_until("5 alive", DEADLINE, || {
        agents.iter().all(|a| a.alive_count() == 5)
    });

    let stop = Arc::new(AtomicBool::new(false));
    let (acked_a, wa) = writer(&agents[1], "p", stop.clone());
    let (acked_b, wb) = writer(&agents[3], "q", stop.clone());
    wait_until("writes acknowledged on two agents", DEADLINE, || {
        acked_a.lock().expect("lock").len() >= 150 && acked_b.lock().expect("lock").len() >= 150
    });
    for a in &mut agents {
        a.child.kill().expect("SIGKILL");
    }
    for a in &mut agents {
        let _ = a.child.wait();
    }
    stop.store(true, Ordering::Relaxed);
    wa.join().expect("writer");
    wb.join().expect("writer");
    let mut acked = acked_a.lock().expect("lock").clone();
    acked.extend(acked_b.lock().expect("lock").iter().cloned());
    drop(agents);

    // Back with their data dirs; the snapshot inside each brings them
    // together without --join.
    let agents: Vec<Agent> = (0..names.len())
        .map(|i| start(names[i], ports[i], &dir(i), &[]))
        .collect();
    wait_until("5 alive again", DEADLINE, || {
        agents.iter().all(|a| a.alive_count() == 5)
    });
    for a in &agents {
        wait_until(
            &format!("{} holds all {} acknowledged writes", a.name, acked.len()),
            DEADLINE,
            || missing(a, &acked) == 0,
        );
    }
    let _ = std::fs::remove_dir_all(root);
}

/// Run an agent that must refuse to start; its stderr.
fn refused(name: &str, args: &[&str]) -> String {
    let out = std::process::Command::new(common::BIN)
        .args(["agent", "--name", name, "--profile", "local"])
        .args(["--bind", &format!("127.0.0.1:{}", common::free_port())])
        .args(["--http", &format!("127.0.0.1:{}", common::free_port())])
        .args(args)
        .output()
        .expect("run rumor");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "exit 1 expected:\n{err}");
    assert!(!err.contains("panicked"), "{err}");
    err
}

#[test]
fn a_busy_damaged_or_unusable_data_dir_is_one_clear_line() {
    let root = temp_dir("durable-bad");
    let dir = root.join("data");
    let a = start("a", fixed_port(), &dir, &[]);
    assert_eq!(put(&a, "k", "v"), Some(200));

    let err = refused("a2", &["--data-dir", dir.to_str().unwrap()]);
    assert!(
        err.contains("locked") && err.contains(dir.to_str().unwrap()),
        "{err}"
    );
    drop(a);

    let err = refused("other", &["--data-dir", dir.to_str().unwrap()]);
    assert!(err.contains("belongs to the node named \"a\""), "{err}");

    let file = root.join("a-file");
    std::fs::write(&file, "not a directory").unwrap();
    let under_file = file.join("data");
    let err = refused("a", &["--data-dir", under_file.to_str().unwrap()]);
    assert!(
        err.contains(under_file.to_str().unwrap()) || err.contains(file.to_str().unwrap()),
        "{err}"
    );

    // Damage the database file: cut it short.
    let db = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "redb"))
        .expect("the database file");
    let len = std::fs::metadata(&db).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(&db).unwrap();
    f.set_len(len / 3).unwrap();
    drop(f);
    let err = refused("a", &["--data-dir", dir.to_str().unwrap()]);
    assert!(err.contains(db.to_str().unwrap()), "{err}");
    assert!(
        err.lines()
            .filter(|l| l.contains("rumor:") || l.contains("Error"))
            .count()
            <= 2,
        "{err}"
    );

    // A damaged snapshot alone is set aside: the agent starts.
    let fresh = root.join("fresh");
    let a = start("a", fixed_port(), &fresh, &[]);
    drop(a);
    std::fs::write(fresh.join("snapshot.json"), "{\"name\":").unwrap();
    let a = start("a", fixed_port(), &fresh, &[]);
    assert!(a.stderr().contains("snapshot"), "{}", a.stderr());
    assert!(fresh.join("snapshot.json.corrupt").exists());
    drop(a);
    let _ = std::fs::remove_dir_all(root);
}

/// A small tmpfs for one test, unmounted when dropped. `None` unless the
/// test runs as root (mounting needs it).
struct SmallDisk {
    dir: PathBuf,
}

impl SmallDisk {
    fn mount(dir: PathBuf, size: &str) -> Option<Self> {
        // SAFETY: geteuid has no preconditions and cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            return None;
        }
        std::fs::create_dir_all(&dir).ok()?;
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&dir)
            .status()
            .ok()?
            .success();
        ok.then_some(SmallDisk { dir })
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.dir)
            .status();
    }
}

/// Fill the file system under `dir` until it refuses a byte more.
fn fill(dir: &Path) -> PathBuf {
    use std::io::Write;
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).expect("filler");
    let chunk = vec![0u8; 16 * 1024];
    while f.write_all(&chunk).is_ok() {}
    for _ in 0..64 {
        if f.write_all(&chunk[..64]).is_err() {
            break;
        }
    }
    let _ = f.sync_all();
    path
}

#[test]
fn a_full_disk_refuses_writes_with_507_keeps_gossiping_and_loses_nothing_acknowledged() {
    let root = temp_dir("durable-full");
    let Some(disk) = SmallDisk::mount(root.join("disk"), "8m") else {
        eprintln!("skipped: mounting a small tmpfs needs root");
        return;
    };
    let dir = disk.dir.join("data");
    let port = fixed_port();
    let b = agent("b").spawn();
    let mut a = start("a", port, &dir, &[&b]);
    wait_until("2 alive", DEADLINE, || b.alive_count() == 2);

    let filler = fill(&disk.dir);
    let mut acked = Vec::new();
    let mut answer_507 = None;
    let value = "v".repeat(2000);
    for i in 0..5000 {
        let key = format!("f-{i}");
        let http = ureq::AgentBuilder::new()
            .timeout(Duration::from_secs(10))
            .build();
        match http
            .put(&a.url(&format!("/v1/kv/{key}")))
            .send_string(&value)
        {
            Ok(_) => acked.push(key),
            Err(ureq::Error::Status(507, r)) => {
                answer_507 = Some(r.into_string().unwrap_or_default());
                break;
            }
            Err(e) => panic!("PUT {key}: {e}"),
        }
    }
    let body = answer_507.expect("a write refused with 507 once the disk is full");
    // A new agent cannot start on the full disk: one line, exit 1.
    let other = disk.dir.join("other");
    let err = refused("c", &["--data-dir", other.to_str().expect("utf-8")]);
    assert!(
        err.contains("disk full") && err.contains(other.to_str().expect("utf-8")),
        "{err}"
    );
    assert!(
        body.contains("disk full") && body.contains("not acknowledged"),
        "{body}"
    );
    // Gossip carries on: b still sees a alive, a still answers.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(b.status_of("a").as_deref(), Some("alive"));
    assert_eq!(a.alive_count(), 2);

    // Room again: writes are acknowledged again once the writer retries.
    std::fs::remove_file(&filler).expect("free the disk");
    wait_until("writes acknowledged again", DEADLINE, || {
        put(&a, "after", "room again") == Some(200)
    });
    acked.push("after".into());
    a.child.kill().expect("SIGKILL a");
    let _ = a.child.wait();
    let a = start("a", port, &dir, &[&b]);
    assert_eq!(missing(&a, &acked), 0, "every acknowledged write survived");
    drop(a);
    drop(disk);
    let _ = std::fs::remove_dir_all(root);
}
