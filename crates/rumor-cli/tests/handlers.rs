//! `--event-handler [FILTER=]CMD` on real agents: filters by event type and
//! user-event name, repeatable handlers, the replay of existing members as
//! `member-join`, refused filters, and the log of each run.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;

/// Lines of a file written by a handler (empty if not there yet).
fn lines(p: &Path) -> Vec<String> {
    std::fs::read_to_string(p)
        .unwrap_or_default()
        .lines()
        .map(String::from)
        .collect()
}

fn has(p: &Path, line: &str) -> bool {
    lines(p).iter().any(|l| l == line)
}

#[test]
fn filters_pick_types_and_user_event_names() {
    let dir = temp_dir("handlers-filter");
    let filtered = dir.join("filtered");
    let all = dir.join("all");
    let a = agent("hf-a").spawn();
    // Two handlers: one filtered (joins and the user event `deploy`), one
    // for everything. The second starts with an upper-case variable
    // assignment: a command, not a filter.
    let h1 = format!(
        "member-join,user:deploy=echo \"$RUMOR_EVENT $RUMOR_MEMBER_NAME$RUMOR_USER_EVENT\" >> {}",
        filtered.display()
    );
    let h2 = format!(
        "F={}; echo \"$RUMOR_EVENT $RUMOR_MEMBER_NAME$RUMOR_USER_EVENT\" >> \"$F\"",
        all.display()
    );
    let b = agent("hf-b")
        .args(&["--event-handler", &h1, "--event-handler", &h2])
        .join(&[&a])
        .spawn();
    wait_until("b's handlers see a and b join", DEADLINE, || {
        has(&filtered, "member-join hf-a") && has(&all, "member-join hf-b")
    });

    let mut c = agent("hf-c").join(&[&a]).spawn();
    wait_until("b's filtered handler sees c join", DEADLINE, || {
        has(&filtered, "member-join hf-c")
    });
    c.signal(nix::sys::signal::Signal::SIGTERM);
    c.wait_exit(DEADLINE);
    wait_until("b's unfiltered handler sees c leave", DEADLINE, || {
        has(&all, "member-leave hf-c")
    });
    let o = a.cli(&["event", "other", "x"]);
    assert!(o.status.success(), "{}", stderr(&o));
    wait_until("the unfiltered handler sees `other`", DEADLINE, || {
        has(&all, "user other")
    });
    let o = a.cli(&["event", "deploy", "v2"]);
    assert!(o.status.success(), "{}", stderr(&o));
    // One handler runs its events in order: once it has run for `deploy`
    // it has seen (and skipped) everything before.
    wait_until("the filtered handler sees `deploy`", DEADLINE, || {
        has(&filtered, "user deploy")
    });
    for l in lines(&filtered) {
        assert!(
            l.starts_with("member-join ") || l == "user deploy",
            "the filtered handler ran for {l:?}:\n{}",
            lines(&filtered).join("\n")
        );
    }
    // The two handlers run apart: the unfiltered one may still be behind.
    wait_until("the unfiltered handler sees `deploy`", DEADLINE, || {
        has(&all, "user deploy")
    });
    drop(b);
}

#[test]
fn a_late_joiner_sees_existing_members_as_joins() {
    let dir = temp_dir("handlers-replay");
    let out = dir.join("joins");
    let a = agent("hr-a").spawn();
    let b = agent("hr-b").join(&[&a]).spawn();
    let c = agent("hr-c").join(&[&a]).spawn();
    wait_until("a sees three alive", DEADLINE, || a.alive_count() == 3);
    // The handler starts after the join has brought the member list in:
    // without the replay it would never hear of a, b or c.
    let handler = format!(
        "member-join=echo \"$RUMOR_MEMBER_NAME $RUMOR_MEMBER_STATUS\" >> {}",
        out.display()
    );
    let d = agent("hr-d")
        .args(&["--event-handler", &handler])
        .join(&[&a])
        .spawn();
    wait_until(
        "d's handler sees every member as member-join",
        DEADLINE,
        || {
            ["hr-a", "hr-b", "hr-c", "hr-d"]
                .iter()
                .all(|n| has(&out, &format!("{n} alive")))
        },
    );
    drop((b, c, d));
}

#[test]
fn an_unknown_type_is_a_one_line_error() {
    for (arg, word) in [
        ("foo=bar.sh", "\"foo\""),
        ("member-joined=a.sh", "\"member-joined\""),
    ] {
        let o = Command::new(BIN)
            .args(["agent", "--name", "x", "--profile", "local"])
            .args(["--bind", "127.0.0.1:0", "--http", "127.0.0.1:0"])
            .args(["--event-handler", arg])
            .output()
            .expect("run rumor");
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{arg}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{arg}: {err}");
        assert!(
            err.contains("unknown event type") && err.contains(word),
            "{arg}: {err}"
        );
    }
}

#[test]
fn output_exit_status_and_slow_runs_are_logged() {
    let a = agent("ho-a")
        .args(&[
            "--event-handler",
            "member-join=echo out-$RUMOR_MEMBER_NAME; echo err-$RUMOR_MEMBER_NAME >&2; exit 3",
            "--event-handler",
            "user:ok=echo fine-$RUMOR_USER_EVENT",
            "--event-handler",
            "user:slow=sleep 20",
            "--event-handler-timeout",
            "1s",
        ])
        .spawn();
    wait_until("the failed run is logged at WARN", DEADLINE, || {
        let log = a.stderr();
        log.lines().any(|l| {
            l.contains("WARN")
                && l.contains("exit status: 3")
                && l.contains("out-ho-a")
                && l.contains("err-ho-a")
        })
    });
    assert!(a.cli(&["event", "ok"]).status.success());
    wait_until(
        "the good run is logged at INFO with its output",
        DEADLINE,
        || {
            a.stderr().lines().any(|l| {
                l.contains("INFO") && l.contains("event handler ran") && l.contains("fine-ok")
            })
        },
    );
    assert!(a.cli(&["event", "slow"]).status.success());
    wait_until(
        "the slow run is killed, logged and counted",
        DEADLINE,
        || {
            let metrics = ureq::get(&a.url("/metrics"))
                .timeout(Duration::from_secs(5))
                .call()
                .ok()
                .and_then(|r| r.into_string().ok())
                .unwrap_or_default();
            a.stderr().contains("ran over 1s")
                && metrics
                    .lines()
                    .any(|l| l.starts_with("rumor_event_handler_slow_total{") && l.ends_with(" 1"))
        },
    );
}
