//! Bad input to `rumor-testbed` gets one line saying what to fix, exit 2,
//! and nothing left behind.

use std::process::{Command, Output};

fn testbed(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rumor-testbed"))
        .args(args)
        .output()
        .expect("run rumor-testbed")
}

fn one_line_error(o: &Output, what: &str) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "stderr: {err}");
    assert!(err.contains(what), "{what:?} not in: {err}");
    assert!(
        err.trim().lines().count() <= 3,
        "more than a short error: {err}"
    );
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn our_namespaces() -> usize {
    let out = Command::new("ip").args(["netns", "list"]).output();
    out.map(|o| {
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .filter(|l| l.starts_with("rtb"))
            .count()
    })
    .unwrap_or(0)
}

#[test]
fn flags_out_of_range_are_refused() {
    one_line_error(&testbed(&["run", "--loss", "2"]), "between 0 and 1");
    one_line_error(
        &testbed(&["run", "--subnet", "8.8.8.0/24"]),
        "private range",
    );
    one_line_error(&testbed(&["run", "--subnet", "10.1.0.0/31"]), "prefix");
    one_line_error(&testbed(&["run", "--profile", "fast"]), "lan, wan or local");
    one_line_error(
        &testbed(&["run", "--rumor-bin", "/nonexistent/rumor"]),
        "no rumor binary",
    );
}

#[test]
fn too_many_hosts_for_the_subnet_is_refused_before_anything_is_made() {
    if !is_root() {
        eprintln!("SKIPPED: the host-count check runs after the root check; needs root");
        return;
    }
    let before = our_namespaces();
    let o = testbed(&["run", "--hosts", "300", "--rumor-bin", "/bin/true"]);
    one_line_error(&o, "does not fit in 10.201.0.0/24");
    let o = testbed(&[
        "run",
        "--hosts",
        "5",
        "--subnet",
        "10.201.0.0/30",
        "--rumor-bin",
        "/bin/true",
    ]);
    one_line_error(&o, "does not fit");
    assert_eq!(our_namespaces(), before, "namespaces were left behind");
}

#[test]
fn without_root_it_says_so() {
    // As root, drop to nobody with setpriv (util-linux) to see the refusal.
    let o = if is_root() {
        match Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(env!("CARGO_BIN_EXE_rumor-testbed"))
            .args(["run", "--rumor-bin", "/bin/true"])
            .output()
        {
            Ok(o) => o,
            Err(_) => {
                eprintln!("SKIPPED: no setpriv to drop root");
                return;
            }
        }
    } else {
        testbed(&["run", "--rumor-bin", "/bin/true"])
    };
    one_line_error(&o, "needs root");
}
