//! The dashboard in a real browser: headless Chromium loads the page of a
//! running 3-node cluster, sees 3 alive rows, and after one node is killed
//! sees its row turn dead. Skipped (loudly) when Chromium is not installed;
//! `scripts/install-browser.sh` installs it.

mod common;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use nix::sys::signal::Signal;

fn chromium() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("RUMOR_CHROMIUM") {
        return Some(PathBuf::from(p));
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

/// Load `url`, let its scripts run for a while, and return the DOM.
fn dump_dom(browser: &PathBuf, url: &str, profile: &std::path::Path) -> String {
    let mut child = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            // Let the page's fetches and event stream run before the dump.
            "--virtual-time-budget=3000",
            "--timeout=8000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("--dump-dom")
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromium");
    // Bound the run: a browser that hangs is killed.
    let end = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        if Instant::now() > end {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = child
        .wait_with_output()
        .map(|o| o.stdout)
        .unwrap_or_default();
    String::from_utf8_lossy(&out).into_owned()
}

fn rows(dom: &str, status: &str) -> usize {
    dom.matches(&format!("data-status=\"{status}\"")).count()
}

#[test]
fn dashboard_shows_members_and_a_crash() {
    let Some(browser) = chromium() else {
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
    let url = a.url("/");
    let mut last = String::new();
    wait_until("the dashboard shows 3 alive rows", DEADLINE, || {
        last = dump_dom(&browser, &url, &profile);
        rows(&last, "alive") == 3
    });
    assert!(last.contains("id=\"row-web-c\""), "{last}");

    c.signal(Signal::SIGKILL);
    c.wait_exit(DEADLINE);
    wait_until(
        "the dashboard shows web-c dead",
        Duration::from_secs(90),
        || {
            last = dump_dom(&browser, &url, &profile);
            last.contains("data-name=\"web-c\" data-status=\"dead\"")
                || (rows(&last, "dead") == 1 && rows(&last, "alive") == 2)
        },
    );
    let _ = std::fs::remove_dir_all(profile);
}
