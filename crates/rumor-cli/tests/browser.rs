//! The dashboard in a real browser: headless Chromium opens the page of a
//! running 3-node cluster and keeps it open; the test sees 3 alive rows,
//! kills one node, and sees its row turn dead and a `member-failed` line in
//! the event log — both delivered to the open page by the SSE stream — and a
//! user event in the log and a tracked aggregate in its panel, the "Last
//! hour" charts drawn from the agent's time series (at least two points,
//! the members line at 3 alive, then 1 dead and a failure per minute above
//! 0), and its panels fit at 1024 px wide. A 200-node `rumor demo`'s
//! dashboard is searched, drilled into and its key browser used; the page alone, at
//! 1,000 and 5,000 members served by a stand-in, redraws only the rows in
//! view. Load times and heap sizes are printed (`--nocapture`), screenshots
//! saved in `target/test-artifacts/`.
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
            // performance.memory reports the heap as it is, not bucketed.
            "--enable-precise-memory-info",
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

    /// Evaluate an expression that yields text.
    fn text(&mut self, expr: &str) -> String {
        self.eval(expr).as_str().unwrap_or_default().to_string()
    }

    /// Lay the page out in a `width` x `height` window.
    fn viewport(&mut self, width: u32, height: u32) {
        self.call(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": false}),
        );
    }

    /// Save a PNG of the whole page as `target/test-artifacts/{name}.png`.
    fn screenshot(&mut self, name: &str) -> PathBuf {
        use base64::Engine;
        let r = self.call(
            "Page.captureScreenshot",
            json!({"format": "png", "captureBeyondViewport": true}),
        );
        let png = base64::engine::general_purpose::STANDARD
            .decode(r["data"].as_str().expect("screenshot data"))
            .expect("screenshot is base64");
        let dir = artifacts_dir();
        std::fs::create_dir_all(&dir).expect("create target/test-artifacts");
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).expect("write screenshot");
        eprintln!("screenshot: {}", path.display());
        path
    }
}

/// `target/test-artifacts`, beside the binary under test's profile directory.
fn artifacts_dir() -> PathBuf {
    Path::new(BIN)
        .parent()
        .and_then(Path::parent)
        .map(|t| t.join("test-artifacts"))
        .unwrap_or_else(|| PathBuf::from("target/test-artifacts"))
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether an element fits its box (its scroll width within its client
/// width, no descendant sticking out on the right, the page not scrolling
/// sideways), and the measures.
fn fits(b: &mut Browser, id: &str) -> (bool, Value) {
    let expr = format!(
        "(() => {{ const p = document.getElementById('{id}'); const r = p.getBoundingClientRect(); \
         let over = 0; for (const e of p.querySelectorAll('*')) {{ const x = e.getBoundingClientRect(); \
         if (x.width) over = Math.max(over, x.right - r.right); }} \
         return JSON.stringify({{scrollWidth: p.scrollWidth, clientWidth: p.clientWidth, over, \
         page: document.documentElement.scrollWidth, window: innerWidth}}); }})()"
    );
    let detail: Value = serde_json::from_str(&b.text(&expr)).unwrap_or(Value::Null);
    let n = |k: &str| detail[k].as_f64().unwrap_or(f64::MAX);
    let ok = n("scrollWidth") <= n("clientWidth") && n("over") <= 0.5 && n("page") <= n("window");
    (ok, detail)
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
    // Sampled every second, so that the "Last hour" charts get points soon.
    let a = agent("web-a")
        .args(&["--timeseries-interval", "1s"])
        .spawn();
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

    // The "Last hour" panel: every chart has at least two points from the
    // agent's ring, the members chart's alive line ends at the 3 members,
    // and the propagation line sets the measured p99 beside the budget.
    wait_until("the last-hour charts have two points", DEADLINE, || {
        let n = browser.eval(
            "Math.min(...[...document.querySelectorAll('#ts-charts svg')].map(s => +s.dataset.points))",
        );
        n.as_f64().is_some_and(|n| n >= 2.0)
    });
    wait_until("the members chart shows 3 alive", DEADLINE, || {
        browser.text(
            "(document.querySelector('#ts-members polyline[data-series=alive]') || {dataset: {}}).dataset.last || ''",
        ) == "3"
    });
    let charts = browser.eval("document.querySelectorAll('#ts-charts svg').length");
    assert_eq!(charts, 4, "four charts");
    let lines = browser.eval("document.querySelectorAll('#ts-charts polyline').length");
    assert!(lines.as_u64().is_some_and(|n| n >= 4), "lines: {lines}");
    let note = browser.text("document.getElementById('ts-note').textContent");
    assert!(note.contains("every 1 s"), "{note}");
    let budget = a.get("/v1/info")["propagation"]["budget_seconds"].as_f64();
    assert!(budget.is_some_and(|b| b > 0.0), "{budget:?}");
    wait_until("the propagation line shows the budget", DEADLINE, || {
        browser
            .text("document.getElementById('ts-propagation').textContent")
            .starts_with("Propagation: measured p99 not measured yet / budget ")
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
    wait_until("the aggregate panel shows load's numbers", DEADLINE, || {
        browser
            .text("document.getElementById('aggs').textContent")
            .contains("avg")
    });
    // The aggregates panel fits its column at 1024 and 1400 px wide: no
    // part of it sticks out or scrolls sideways, nor does the page.
    for (w, h) in [(1024, 768), (1400, 900)] {
        browser.viewport(w, h);
        let (ok, fit) = fits(&mut browser, "aggs-panel");
        assert!(ok, "aggregates panel at {w}x{h}: {fit}");
        let (ok, fit) = fits(&mut browser, "members-panel");
        assert!(ok, "member panel at {w}x{h}: {fit}");
        let (ok, fit) = fits(&mut browser, "ts-panel");
        assert!(ok, "last-hour panel at {w}x{h}: {fit}");
    }
    browser.screenshot("dashboard-last-hour-1400");

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
    // The charts follow: the members chart's dead line ends at 1, the
    // failures chart has risen above 0.
    wait_until("the members chart shows web-c dead", DEADLINE, || {
        browser.text(
            "(document.querySelector('#ts-members polyline[data-series=dead]') || {dataset: {}}).dataset.last || ''",
        ) == "1"
    });
    wait_until("the failures chart shows the failure", DEADLINE, || {
        browser
            .text("document.querySelector('#ts-failures svg').dataset.max")
            .parse::<f64>()
            .is_ok_and(|m| m > 0.0)
    });
    browser.screenshot("dashboard-last-hour-after-crash");

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

/// A `rumor demo` process: its dashboard's URL, and the lines it printed.
struct Demo {
    child: Child,
    url: String,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Demo {
    /// Start `rumor demo --nodes n` on free ports and wait for its
    /// dashboard's URL.
    fn start(n: usize) -> Demo {
        let mut child = Command::new(BIN)
            .args(["demo", "--nodes", &n.to_string(), "--http", "127.0.0.1:0"])
            .env("RUMOR_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start rumor demo");
        let out = child.stdout.take().expect("demo stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(out).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let mut d = Demo {
            child,
            url: String::new(),
            lines: rx,
            seen: Vec::new(),
        };
        d.wait_line("the demo's dashboard URL", "dashboard of ");
        let line = d.seen.last().unwrap().clone();
        d.url = line
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .unwrap_or_else(|| panic!("no URL in {line:?}"))
            .trim_end_matches('/')
            .to_string();
        d
    }

    /// Wait for a printed line containing `needle`.
    fn wait_line(&mut self, what: &str, needle: &str) {
        let end = Instant::now() + Duration::from_secs(240);
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    let hit = l.contains(needle);
                    self.seen.push(l);
                    if hit {
                        return;
                    }
                }
                Err(_) => panic!(
                    "timed out waiting for {what}; the demo printed:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }

    fn api(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        // Ctrl-C, so that the demo stops its paused node's process too.
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, Signal::SIGINT);
        let end = Instant::now() + Duration::from_secs(20);
        while Instant::now() < end {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn set_input(b: &mut Browser, id: &str, value: &str) {
    let v = serde_json::to_string(value).unwrap();
    b.eval(&format!(
        "(() => {{ const e = document.getElementById('{id}'); e.value = {v}; \
         e.dispatchEvent(new Event('input', {{bubbles: true}})); }})()"
    ));
}

/// Open the dashboard of an `n`-node demo: it reports every member, finds
/// one by search, drills into it (incarnation, per-node state, its events),
/// and lists and shows a key written through the API. Prints the page's
/// load time and heap; saves screenshots in target/test-artifacts.
fn dashboard_of_a_demo(n: usize) {
    let Some(exe) = chromium() else {
        eprintln!("SKIPPED dashboard browser test: chromium is not installed.");
        return;
    };
    let mut demo = Demo::start(n);
    // The scripted crash, pause, leave and user event are over: the
    // members' statuses no longer move.
    demo.wait_line("the demo's script", "script done");
    let total = format!("{n} of {n} members");

    // Something for the drill-down and the panels to show: node-00's own
    // per-node state, a tracked aggregate and a key.
    let (code, body) = request("PUT", &demo.api("/v1/state/load"), None, Some("0.5"));
    assert_eq!(code, 200, "{body}");
    let (code, body) = request("GET", &demo.api("/v1/aggregate/load"), None, None);
    assert!(code == 200 || code == 202, "{code} {body}");
    let (code, body) = request(
        "PUT",
        &demo.api("/v1/kv/dash/greeting"),
        None,
        Some("hello from the browser test"),
    );
    assert_eq!(code, 200, "{body}");
    let me: Value = {
        let (code, v) = request("GET", &demo.api("/v1/members/node-00"), None, None);
        assert_eq!(code, 200, "{v}");
        v
    };

    let profile = temp_dir("chromium-demo");
    let mut browser = Browser::start(&exe, &profile);
    let opened = Instant::now();
    browser.open(&demo.api("/"));
    browser.viewport(1280, 900);
    wait_until(&format!("the dashboard reports {total}"), DEADLINE, || {
        browser.text("document.getElementById('shown').textContent") == total
    });
    let shown_after = opened.elapsed();
    wait_until("the event stream is connected", DEADLINE, || {
        browser.text("document.getElementById('conn').textContent") == "live"
    });
    let counts: Vec<String> = ["alive", "suspect", "dead", "left"]
        .iter()
        .map(|s| browser.text(&format!("document.getElementById('n-{s}').textContent")))
        .collect();
    let sum: usize = counts.iter().map(|c| c.parse::<usize>().unwrap_or(0)).sum();
    assert_eq!(sum, n, "counts {counts:?}");
    // The script's crash and leave happened before the page was opened:
    // only the agent's replayed history can show them.
    wait_until(
        "the replayed history shows the crash and the leave",
        DEADLINE,
        || {
            let log = browser.text("document.getElementById('log').textContent");
            log.contains("member-failed node-") && log.contains("member-leave node-")
        },
    );
    // Only the visible rows are in the DOM.
    let visible = rows(&mut browser).len();
    assert!(
        visible > 0 && visible < n.min(100),
        "{visible} rows in the DOM"
    );

    // Numbers: navigation timing, when the table was first drawn, the heap.
    let timing: Value = serde_json::from_str(&browser.text(
        "JSON.stringify({nav: performance.getEntriesByType('navigation')[0].toJSON(), \
         ready: window.dashStats.readyMs, renders: window.dashStats.renders, \
         heap: performance.memory ? performance.memory.usedJSHeapSize : null, \
         nodes: document.getElementsByTagName('*').length})",
    ))
    .expect("timing JSON");
    let heap = browser.call("Runtime.getHeapUsage", json!({}));
    let ms = |v: &Value| v.as_f64().unwrap_or(f64::NAN);
    eprintln!(
        "dashboard at {n} members: DOMContentLoaded {:.0} ms, load event {:.0} ms, table drawn {:.0} ms \
         after navigation start ({} renders); {total} seen by the test {:.0} ms after opening; \
         JS heap {:.2} MB (performance.memory.usedJSHeapSize; Runtime.getHeapUsage: {:.2} MB used of {:.2} MB); \
         {} DOM elements, {visible} member rows in the DOM",
        ms(&timing["nav"]["domContentLoadedEventEnd"]),
        ms(&timing["nav"]["loadEventEnd"]),
        ms(&timing["ready"]),
        timing["renders"],
        shown_after.as_secs_f64() * 1000.0,
        ms(&timing["heap"]) / 1e6,
        ms(&heap["usedSize"]) / 1e6,
        ms(&heap["totalSize"]) / 1e6,
        timing["nodes"],
    );
    browser.screenshot(&format!("dashboard-{n}-members"));

    // Search: one row, "1 of n members".
    set_input(&mut browser, "search", "node-00");
    wait_until("the search shows node-00 alone", DEADLINE, || {
        let r = rows(&mut browser);
        r.len() == 1 && r[0].0 == "node-00"
    });
    assert_eq!(
        browser.text("document.getElementById('shown').textContent"),
        format!("1 of {n} members")
    );

    // Drill-down: name, incarnation, its per-node state, its user event.
    browser.eval("document.querySelector('tr.member').click()");
    let inc = me["incarnation"].to_string();
    wait_until("the drill-down shows node-00", DEADLINE, || {
        browser.text("document.getElementById('d-name').textContent") == "node-00"
            && browser.text("document.getElementById('d-incarnation').textContent") == inc
    });
    wait_until("the drill-down shows node-00's state", DEADLINE, || {
        browser.text("document.getElementById('d-state').textContent") == "load0.5"
    });
    let events = browser.text("document.getElementById('d-events').textContent");
    assert!(
        events.contains("user event demo from node-00"),
        "drill-down events: {events}"
    );
    assert_eq!(
        browser.text("document.getElementById('d-addr').textContent"),
        me["addr"].as_str().unwrap()
    );

    // Key browser: the key written through the API, listed by prefix and
    // shown with its value and writer.
    set_input(&mut browser, "kv-prefix", "dash/");
    wait_until("the key browser lists dash/greeting", DEADLINE, || {
        browser
            .text("document.getElementById('kv-keys').textContent")
            .contains("dash/greeting")
    });
    browser.eval("document.querySelector('tr.kv-key[data-key=\"dash/greeting\"]').click()");
    wait_until("the key browser shows the value", DEADLINE, || {
        browser.text("(document.getElementById('kv-value') || {}).textContent || ''")
            == "hello from the browser test"
    });
    let fields = browser.text("document.getElementById('kv-fields').textContent");
    assert!(
        fields.contains("lww") && fields.contains("node-00"),
        "key fields: {fields}"
    );
    let rtt = browser.text("document.getElementById('d-rtt').textContent");
    assert_eq!(
        rtt, "not probed by this agent yet",
        "node-00 is the agent itself"
    );
    browser.screenshot(&format!("dashboard-{n}-members-drilldown"));

    // The last-hour charts: at least two points from the agent's ring (one
    // every 10 s since the demo started), the members chart's alive line
    // at the cluster's alive count.
    wait_until("the last-hour charts have two points", DEADLINE, || {
        let points = browser.eval(
            "Math.min(...[...document.querySelectorAll('#ts-charts svg')].map(s => +s.dataset.points))",
        );
        points.as_f64().is_some_and(|p| p >= 2.0)
    });
    let alive = browser.text(
        "(document.querySelector('#ts-members polyline[data-series=alive]') || {dataset: {}}).dataset.last || ''",
    );
    assert!(
        alive.parse::<usize>().is_ok_and(|a| a + 3 >= n && a <= n),
        "alive line ends at {alive:?} of {n}"
    );

    // At 1024 x 768 the panels fit their columns.
    browser.viewport(1024, 768);
    for id in [
        "aggs-panel",
        "members-panel",
        "detail",
        "kv-panel",
        "ts-panel",
    ] {
        let (ok, fit) = fits(&mut browser, id);
        assert!(ok, "{id} at 1024x768: {fit}");
    }
    browser.screenshot(&format!("dashboard-{n}-members-1024"));
    drop(browser);
    let _ = std::fs::remove_dir_all(profile);
}

#[test]
fn dashboard_of_a_200_node_demo() {
    dashboard_of_a_demo(200);
}

/// The same at 1,000 nodes: heavy for a shared machine, so run by hand:
/// `cargo test -p rumor-cli --test browser -- --ignored --nocapture`.
#[test]
#[ignore]
fn dashboard_of_a_1000_node_demo() {
    dashboard_of_a_demo(1000);
}

/// A stand-in agent for the page alone: serves the dashboard and a cluster
/// of `n` made-up members from memory (so thousands of members cost the
/// machine nothing), and holds the pages' event streams open so that the
/// test can push member events into them.
struct FakeAgent {
    addr: std::net::SocketAddr,
    streams: std::sync::Arc<std::sync::Mutex<Vec<std::net::TcpStream>>>,
    next_id: u64,
}

fn fake_member(i: usize, status: &str, incarnation: u64, now: u128) -> Value {
    json!({
        "name": format!("node-{i:05}"), "addr": format!("127.0.0.1:{}", 10_000 + i),
        "status": status, "incarnation": incarnation,
        "tags": {"zone": format!("z{}", i % 3), "rack": format!("r{}", i % 40)},
        "last_change_ms": now as u64, "state": {}, "protocol": [1, 1],
    })
}

/// Three points a minute apart, `n` members alive, as `GET /v1/timeseries`.
fn fake_series(n: usize) -> String {
    let now = now_ms() as u64;
    let point = |i: u64, rate: Value| {
        json!({"t": now - (2 - i) * 60_000,
               "members": {"alive": n, "suspect": 0, "dead": 0, "left": 0},
               "suspicions_per_min": rate, "failures_per_min": rate,
               "bytes_in_per_s": rate, "bytes_out_per_s": rate, "events_per_min": rate})
    };
    json!({"interval_ms": 60_000, "capacity": 60,
           "points": [point(0, Value::Null), point(1, json!(2.0)), point(2, json!(4.0))]})
    .to_string()
}

fn now_ms() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
}

impl FakeAgent {
    fn start(n: usize) -> FakeAgent {
        use std::io::BufRead;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().unwrap();
        let now = now_ms() - 60_000;
        let members = Value::Array((0..n).map(|i| fake_member(i, "alive", 1, now)).collect());
        let members = std::sync::Arc::new(members.to_string());
        let streams = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let keep = streams.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { return };
                let members = members.clone();
                let keep = keep.clone();
                std::thread::spawn(move || {
                    let mut head = String::new();
                    let mut r = std::io::BufReader::new(conn.try_clone().unwrap());
                    while r.read_line(&mut head).is_ok_and(|n| n > 2) {}
                    let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
                    let (ctype, body): (&str, String) = match path.split('?').next().unwrap() {
                        "/" => ("text/html", include_str!("../src/dashboard/index.html").into()),
                        "/v1/members" => ("application/json", members.to_string()),
                        "/v1/self" => (
                            "application/json",
                            json!({"name": "node-00000", "addr": "127.0.0.1:10000", "awareness": 0})
                                .to_string(),
                        ),
                        "/v1/events" => {
                            let h = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\
                                     Cache-Control: no-store\r\n\r\n: hello\n\n";
                            if conn.write_all(h.as_bytes()).is_ok() {
                                keep.lock().unwrap().push(conn);
                            }
                            return;
                        }
                        // What another agent version may add to /v1/info.
                        "/v1/info" => (
                            "application/json",
                            json!({"name": "node-00000", "propagation": {
                                "budget_seconds": 1.5, "classic_seconds": 4.0,
                                "measured_p99_seconds": 0.42, "members": n,
                                "advice": "within budget"}})
                            .to_string(),
                        ),
                        "/v1/timeseries" => ("application/json", fake_series(n)),
                        p if p.starts_with("/v1/members/") => (
                            "application/json",
                            json!({"name": &p[12..], "state": {"role": "fake"}}).to_string(),
                        ),
                        _ => ("application/json", "[]".into()),
                    };
                    let resp = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\n\
                         Connection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = conn.write_all(resp.as_bytes());
                });
            }
        });
        FakeAgent {
            addr,
            streams,
            next_id: 1,
        }
    }

    /// Send member events (`(index, status, incarnation)`) to every open
    /// stream, in one write.
    fn push(&mut self, updates: &[(usize, &str, u64)]) {
        let now = now_ms();
        let mut buf = String::new();
        for &(i, status, inc) in updates {
            let ty = if status == "suspect" {
                "member-suspect"
            } else {
                "member-update"
            };
            let id = self.next_id;
            self.next_id += 1;
            let data = json!({"id": id, "type": ty, "time_ms": now as u64,
                              "member": fake_member(i, status, inc, now)});
            buf.push_str(&format!("id: {id}\nevent: member\ndata: {data}\n\n"));
        }
        for s in self.streams.lock().unwrap().iter_mut() {
            let _ = s.write_all(buf.as_bytes());
        }
    }
}

/// The page alone at 1,000 and 5,000 members (a stand-in agent serves them):
/// it loads, keeps a few dozen rows in the DOM, and a burst of events for
/// the half of the members out of view redraws no row at all, while one for a member in
/// view redraws that row; the "Last hour" panel draws the stand-in's
/// series and the propagation line of its `/v1/info`. Prints load time and heap.
#[test]
fn dashboard_page_at_thousands_of_members() {
    let Some(exe) = chromium() else {
        eprintln!("SKIPPED dashboard browser test: chromium is not installed.");
        return;
    };
    for n in [1000, 5000] {
        let mut fake = FakeAgent::start(n);
        let profile = temp_dir("chromium-fake");
        let mut browser = Browser::start(&exe, &profile);
        let opened = Instant::now();
        browser.open(&format!("http://{}/", fake.addr));
        let total = format!("{n} of {n} members");
        wait_until(&format!("the page reports {total}"), DEADLINE, || {
            browser.text("document.getElementById('shown').textContent") == total
        });
        let seen = opened.elapsed();
        wait_until("the event stream is open", DEADLINE, || {
            !fake.streams.lock().unwrap().is_empty()
                && browser.text("document.getElementById('conn').textContent") == "live"
        });
        let timing: Value = serde_json::from_str(&browser.text(
            "JSON.stringify({nav: performance.getEntriesByType('navigation')[0].toJSON(), \
             ready: window.dashStats.readyMs, heap: performance.memory.usedJSHeapSize, \
             rows: document.querySelectorAll('tr.member').length})",
        ))
        .unwrap();
        let rows_in_dom = timing["rows"].as_u64().unwrap_or(u64::MAX);
        assert!(rows_in_dom > 0 && rows_in_dom < 100, "{timing}");
        // The "Last hour" panel: the stand-in's three points, its alive
        // line at n, and the propagation line of its /v1/info.
        wait_until(
            "the last-hour panel shows the propagation",
            DEADLINE,
            || {
                browser
                    .text("document.getElementById('ts-propagation').textContent")
                    .starts_with("Propagation: measured p99 0.42 s / budget 1.5 s")
            },
        );
        assert_eq!(
            browser.text("document.querySelector('#ts-members svg').dataset.points"),
            "3"
        );
        assert_eq!(
            browser.text(
                "document.querySelector('#ts-members polyline[data-series=alive]').dataset.last"
            ),
            n.to_string()
        );
        assert_eq!(
            browser.text("document.querySelector('#ts-events svg').dataset.max"),
            "4"
        );

        // Count the rows redrawn from now on (each redraw of a row rewrites
        // its cells: the distinct rows whose children changed, per batch).
        browser.eval(
            "window.refills = 0; new MutationObserver(ms => { window.refills += new Set(ms \
             .map(m => m.target).filter(t => t.matches && t.matches('tr.member'))).size; }) \
             .observe(document.getElementById('members'), {childList: true, subtree: true}); 1",
        );
        let renders_before = browser.eval("window.dashStats.renders").as_u64().unwrap();
        // The second half of the members (sorted by name: out of view).
        let burst: Vec<(usize, &str, u64)> = (n / 2..n).map(|i| (i, "suspect", 2)).collect();
        let suspects = (n - n / 2).to_string();
        let t = Instant::now();
        fake.push(&burst);
        wait_until("the burst is applied", DEADLINE, || {
            browser.text("document.getElementById('n-suspect').textContent") == suspects
        });
        let burst_time = t.elapsed();
        let refills = browser.eval("window.refills");
        assert_eq!(refills, 0, "rows redrawn for members out of view");
        let renders = browser.eval("window.dashStats.renders").as_u64().unwrap() - renders_before;
        fake.push(&[(0, "suspect", 3)]);
        wait_until("the row in view turns suspect", DEADLINE, || {
            rows(&mut browser).contains(&("node-00000".into(), "suspect".into()))
        });
        assert_eq!(browser.eval("window.refills"), 1, "one row redrawn");
        let heap = browser.eval("performance.memory.usedJSHeapSize");

        // Scrolled to the bottom, the last member shows (and still only a
        // few dozen rows are in the DOM).
        let last = format!("node-{:05}", n - 1);
        browser.eval("document.getElementById('table-wrap').scrollTop = 1e9; 1");
        wait_until("the last member shows at the bottom", DEADLINE, || {
            let r = rows(&mut browser);
            r.len() < 100 && r.iter().any(|(name, _)| *name == last)
        });
        // The status filter: the suspects, node-00000 first.
        browser.eval(
            "(() => { const f = document.getElementById('status-filter'); f.value = 'suspect'; \
             f.dispatchEvent(new Event('change')); })()",
        );
        let want = format!("{} of {n} members", n - n / 2 + 1);
        wait_until("the filter shows the suspects", DEADLINE, || {
            browser.text("document.getElementById('shown').textContent") == want
                && rows(&mut browser).first()
                    == Some(&("node-00000".to_string(), "suspect".to_string()))
        });
        eprintln!(
            "page at {n} members: DOMContentLoaded {:.0} ms, load event {:.0} ms, table drawn {:.0} ms \
             after navigation start; {total} seen by the test {:.0} ms after opening; JS heap {:.2} MB \
             ({:.2} MB after {} events); {rows_in_dom} member rows in the DOM; {} events out \
             of view applied in {:.0} ms in {renders} redraws, 0 rows redrawn",
            timing["nav"]["domContentLoadedEventEnd"].as_f64().unwrap_or(f64::NAN),
            timing["nav"]["loadEventEnd"].as_f64().unwrap_or(f64::NAN),
            timing["ready"].as_f64().unwrap_or(f64::NAN),
            seen.as_secs_f64() * 1000.0,
            timing["heap"].as_f64().unwrap_or(f64::NAN) / 1e6,
            heap.as_f64().unwrap_or(f64::NAN) / 1e6,
            burst.len() + 1,
            burst.len(),
            burst_time.as_secs_f64() * 1000.0,
        );
        if n == 5000 {
            browser.viewport(1280, 900);
            browser.screenshot("dashboard-page-5000-members");
        }
        drop(browser);
        let _ = std::fs::remove_dir_all(profile);
    }
}
