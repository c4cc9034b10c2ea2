//! The dashboard in a real browser: headless Chromium opens the page of a
//! running 3-node cluster and keeps it open; the test sees 3 alive rows,
//! kills one node, and sees its row turn dead and a `member-failed` line in
//! the event log — both delivered to the open page by the SSE stream — and a
//! user event in the log and a tracked aggregate in its panel.
//!
//! Chromium is driven through the DevTools protocol over
//! `--remote-debugging-pipe` (JSON messages separated by NUL bytes on file
//! descriptors 3 and 4), so no WebSocket client is needed. Skipped, loudly,
//! when Chromium is not installed; `scripts/install-browser.sh` installs it.

mod common;

use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;
use nix::sys::signal::Signal;
use serde_json::{json, Value};

fn chromium() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("RUMOR_CHROMIUM") {
        return Some(PathBuf::from(p)).filter(|p| p.exists());
    }
    [
        "/usr/bin/chromium",
        "/usr/bin/chromium-browser",
        "/usr/bin/google-chrome",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.exists())
}

/// A headless browser driven over the DevTools pipe.
struct Browser {
    child: Child,
    to: std::fs::File,
    from: mpsc::Receiver<Value>,
    next_id: u64,
    session: Option<String>,
}

fn pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: `fds` is a valid array of two ints for pipe2(2) to fill.
    let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    assert_eq!(rc, 0, "pipe failed");
    // SAFETY: pipe(2) succeeded, so both descriptors are open and ours.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

impl Browser {
    fn start(exe: &Path, profile: &Path) -> Browser {
        use std::os::fd::AsRawFd;
        let (cmd_r, cmd_w) = pipe();
        let (res_r, res_w) = pipe();
        let (cr, rw) = (cmd_r.as_raw_fd(), res_w.as_raw_fd());
        let mut cmd = Command::new(exe);
        cmd.args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--remote-debugging-pipe",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("about:blank")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        // SAFETY: only async-signal-safe calls (fcntl, dup2) between fork
        // and exec. Both ends are first moved above 10 so that placing one
        // on 3 cannot clobber the other; dup2 clears close-on-exec.
        unsafe {
            cmd.pre_exec(move || {
                let a = libc::fcntl(cr, libc::F_DUPFD_CLOEXEC, 10);
                let b = libc::fcntl(rw, libc::F_DUPFD_CLOEXEC, 10);
                if a < 0 || b < 0 || libc::dup2(a, 3) < 0 || libc::dup2(b, 4) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().expect("start chromium");
        drop(cmd_r);
        drop(res_w);
        let (tx, rx) = mpsc::channel();
        let mut reader = std::fs::File::from(res_r);
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 65536];
            loop {
                let n = match reader.read(&mut chunk) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                buf.extend_from_slice(&chunk[..n]);
                while let Some(i) = buf.iter().position(|&b| b == 0) {
                    let msg: Vec<u8> = buf.drain(..=i).collect();
                    if let Ok(v) = serde_json::from_slice::<Value>(&msg[..msg.len() - 1]) {
                        if tx.send(v).is_err() {
                            return;
                        }
                    }
                }
            }
        });
        Browser {
            child,
            to: std::fs::File::from(cmd_w),
            from: rx,
            next_id: 1,
            session: None,
        }
    }

    /// Send a command and wait for its answer.
    fn call(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let mut msg = json!({"id": id, "method": method, "params": params});
        if let Some(s) = &self.session {
            msg["sessionId"] = json!(s);
        }
        let mut bytes = serde_json::to_vec(&msg).unwrap();
        bytes.push(0);
        self.to.write_all(&bytes).expect("write to chromium");
        let end = Instant::now() + Duration::from_secs(60);
        loop {
            let left = end.saturating_duration_since(Instant::now());
            let v = self
                .from
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("chromium did not answer {method}"));
            if v["id"] == id {
                assert!(v.get("error").is_none(), "{method}: {v}");
                return v["result"].clone();
            }
        }
    }

    /// Open `url` in a new tab and attach to it.
    fn open(&mut self, url: &str) {
        let t = self.call("Target.createTarget", json!({"url": url}));
        let target = t["targetId"].as_str().expect("targetId").to_string();
        let a = self.call(
            "Target.attachToTarget",
            json!({"targetId": target, "flatten": true}),
        );
        self.session = Some(a["sessionId"].as_str().expect("sessionId").to_string());
    }

    /// Evaluate an expression in the page; its value as JSON.
    fn eval(&mut self, expr: &str) -> Value {
        let r = self.call(
            "Runtime.evaluate",
            json!({"expression": expr, "returnByValue": true}),
        );
        r["result"]["value"].clone()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const ROWS: &str = "JSON.stringify([...document.querySelectorAll('tr.member')].map(r => [r.dataset.name, r.dataset.status]))";

fn rows(b: &mut Browser) -> Vec<(String, String)> {
    let v = b.eval(ROWS);
    v.as_str()
        .and_then(|s| serde_json::from_str(s).ok())
        .unwrap_or_default()
}

#[test]
fn dashboard_shows_members_and_a_crash() {
    let Some(exe) = chromium() else {
        eprintln!();
        eprintln!("=============================================================");
        eprintln!("SKIPPED dashboard browser test: chromium is not installed.");
        eprintln!("Run scripts/install-browser.sh (as root) to enable it.");
        eprintln!("=============================================================");
        return;
    };
    let a = agent("web-a").spawn();
    let b = agent("web-b").join(&[&a]).spawn();
    let mut c = agent("web-c").join(&[&a]).spawn();
    wait_until("3 alive", DEADLINE, || {
        a.alive_count() == 3 && b.alive_count() == 3 && c.alive_count() == 3
    });
    let profile = temp_dir("chromium");
    let mut browser = Browser::start(&exe, &profile);
    browser.open(&a.url("/"));
    wait_until("the dashboard shows 3 alive rows", DEADLINE, || {
        let r = rows(&mut browser);
        r.len() == 3 && r.iter().all(|(_, s)| s == "alive")
    });
    wait_until("the event stream is connected", DEADLINE, || {
        browser.eval("document.getElementById('conn').textContent") == "live"
    });

    // A user event sent on another agent shows in the event log; a tracked
    // aggregate shows in its panel.
    let o = b.cli(&["event", "deploy", "v2"]);
    assert!(o.status.success(), "{}", stderr(&o));
    wait_until("the event log shows the user event", DEADLINE, || {
        browser
            .eval("document.getElementById('log').textContent")
            .as_str()
            .is_some_and(|l| l.contains("user event deploy from web-b"))
    });
    let o = a.cli(&["state", "set", "load", "4"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = a.cli(&["agg", "load"]);
    assert!(o.status.success(), "{}", stderr(&o));
    wait_until("the aggregate panel lists load", DEADLINE, || {
        browser
            .eval("document.getElementById('aggs').textContent")
            .as_str()
            .is_some_and(|t| t.contains("load"))
    });

    c.signal(Signal::SIGKILL);
    c.wait_exit(DEADLINE);
    wait_until(
        "the open page shows web-c dead",
        Duration::from_secs(90),
        || rows(&mut browser).contains(&("web-c".to_string(), "dead".to_string())),
    );
    let log = browser.eval("document.getElementById('log').textContent");
    assert!(
        log.as_str()
            .is_some_and(|l| l.contains("member-failed web-c")),
        "event log: {log}"
    );
    let dead = browser.eval("document.getElementById('n-dead').textContent");
    assert_eq!(dead, "1");

    // A page opened after the crash shows it too, from the agent's event
    // history.
    browser.open(&a.url("/"));
    wait_until("the new page's log replays the crash", DEADLINE, || {
        browser
            .eval("document.getElementById('log').textContent")
            .as_str()
            .is_some_and(|l| {
                l.contains("member-failed web-c") && l.contains("user event deploy from web-b")
            })
    });
    wait_until("the new page shows web-c dead", DEADLINE, || {
        rows(&mut browser).contains(&("web-c".to_string(), "dead".to_string()))
    });
    let dead = browser.eval("document.getElementById('n-dead').textContent");
    assert_eq!(dead, "1");
    drop(browser);
    let _ = std::fs::remove_dir_all(profile);
}
