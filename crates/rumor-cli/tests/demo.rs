//! `rumor demo --exit-after-script` runs its whole scenario and prints a
//! timeline: convergence, the crash detected by every survivor, the paused
//! node refuted and never declared failed, the leave seen by all.

mod common;

use std::process::Command;

use common::*;
use serde_json::Value;

#[test]
fn demo_runs_its_script() {
    let o = Command::new(BIN)
        .args(["demo", "--nodes", "6", "--exit-after-script", "--json"])
        .args(["--http", "127.0.0.1:0"])
        .output()
        .unwrap();
    let out = stdout(&o);
    assert!(o.status.success(), "{out}\n{}", stderr(&o));
    assert!(
        out.contains("dashboard of node-00: http://127.0.0.1:"),
        "{out}"
    );
    let json: Value = out
        .lines()
        .find_map(|l| serde_json::from_str(l).ok())
        .expect("a JSON timeline");
    let steps = json["timeline"].as_array().unwrap();
    let find = |prefix: &str| -> &Value {
        steps
            .iter()
            .find(|s| {
                s["what"]
                    .as_str()
                    .is_some_and(|w| w.starts_with(prefix) || w.contains(prefix))
            })
            .unwrap_or_else(|| panic!("no step {prefix:?} in {out}"))
    };
    assert!(find("converged")["detail"]["converged_s"].is_number());
    let failed = &find("declared failed")["detail"];
    assert_eq!(failed["seen_by"], failed["of"], "{out}");
    let pause = &find("alive again everywhere")["detail"];
    assert_eq!(pause["alive_everywhere"], true, "{out}");
    assert_eq!(pause["false_positive"], false, "{out}");
    let left = &find("seen as left")["detail"];
    assert_eq!(left["seen_by"], left["of"], "{out}");
    assert!(out.contains("stopped"), "{out}");
}

#[test]
fn demo_refuses_too_few_nodes() {
    let o = Command::new(BIN)
        .args(["demo", "--nodes", "2", "--http", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("at least 5"), "{}", stderr(&o));
}
