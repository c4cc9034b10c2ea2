//! The command line: bad input is one line and exit code 2; JSON has the
//! promised fields.

use std::process::Command;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_rumor-sim"))
}

fn fails_with_2(args: &[&str]) -> String {
    let out = bin().args(args).output().expect("runs");
    assert_eq!(out.status.code(), Some(2), "{args:?}");
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
    err
}

/// Run with `args`, expect exit 0, and parse the JSON on stdout.
fn json_of(args: &[&str]) -> serde_json::Value {
    let out = bin().args(args).output().expect("runs");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("json")
}

#[test]
fn bad_input_is_one_line_and_exit_2() {
    assert!(fails_with_2(&["--scenario", "bogus"]).contains("unknown scenario"));
    fails_with_2(&["--nodes", "0"]);
    fails_with_2(&["--loss", "1.0"]);
    fails_with_2(&["--loss", "-0.1"]);
    fails_with_2(&["--nodes", "abc"]);
    fails_with_2(&["--profile", "mars"]);
    fails_with_2(&["--epidemic", "shout", "--nodes", "100"]);
    fails_with_2(&["--push-sum", "--nodes", "1"]);
    fails_with_2(&["--push-sum", "--crash", "1.5"]);
    fails_with_2(&["--experiment", "push-sum", "--sizes", "100,x"]);
    let dir = std::env::temp_dir().join(format!("rumor-sim-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp");
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "nodes = [\n").expect("write");
    let err = fails_with_2(&["--scenario", bad.to_str().expect("utf8")]);
    assert!(err.contains("TOML"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn json_summary_has_the_fields() {
    let v = json_of(&[
        "--scenario",
        "crash",
        "--nodes",
        "16",
        "--seed",
        "3",
        "--json",
        "-q",
    ]);
    for k in [
        "nodes",
        "seed",
        "duration_s",
        "dissemination",
        "detection",
        "false_positives",
        "bytes_per_node_per_s",
        "msgs_per_node_per_s",
        "invariant_violations",
    ] {
        assert!(v.get(k).is_some(), "missing {k}");
    }
    for k in ["t50_s", "t90_s", "t99_s", "t100_s"] {
        assert!(v["dissemination"].get(k).is_some());
    }
    for k in ["first_suspect_s", "first_dead_s", "all_dead_s"] {
        assert!(v["detection"][k].is_number(), "{k}");
    }
}

#[test]
fn hostile_scenario_reports_what_was_refused() {
    let v = json_of(&["--scenario", "hostile", "--nodes", "16", "--json", "-q"]);
    let h = &v["hostile"];
    assert!(h["sent"]["invented_claims"].as_u64() > Some(0), "{h}");
    assert_eq!(h["invented_admitted"].as_u64(), Some(0), "{h}");
    assert!(h["members_pending"].as_u64() > Some(0), "{h}");
    let refused = h["refused"].as_array().expect("refused");
    assert!(refused.iter().any(|r| r[0] == "implausible_counter"), "{h}");
}

#[test]
fn planted_bug_exits_1_with_replay_command() {
    let out = bin()
        .args(["--scenario", "pause", "--nodes", "16", "--no-refute", "-q"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("rumor-sim --scenario pause --nodes 16 --profile lan --no-refute --seed 1"),
        "{err}"
    );
}

#[test]
fn toml_file_and_out_dir_and_seeds() {
    let dir = std::env::temp_dir().join(format!("rumor-sim-out-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp");
    let file = dir.join("s.toml");
    std::fs::write(
        &file,
        "nodes = 12\nduration = 120\n[network]\nlatency = { kind = \"log_normal\", median_ms = 1.0, sigma = 0.5 }\n[[faults]]\nkind = \"crash\"\nat = 10\nnode = 4\n[[faults]]\nkind = \"tags\"\nat = 12\nnode = 2\nkey = \"a\"\nvalue = \"b\"\n",
    )
    .expect("write");
    let out = bin()
        .args([
            "--scenario",
            file.to_str().expect("utf8"),
            "--nodes",
            "12",
            "--out",
            dir.to_str().expect("utf8"),
            "-q",
        ])
        .output()
        .expect("runs");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for f in [
        "updates.csv",
        "infection.csv",
        "detection.csv",
        "summary.json",
        "infection.png",
        "detection.png",
    ] {
        assert!(dir.join(f).is_file(), "{f}");
    }
    let out = bin()
        .args([
            "--scenario",
            "random",
            "--nodes",
            "12",
            "--seeds",
            "4",
            "--json",
            "-q",
        ])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let seeds: Vec<u64> = v
        .as_array()
        .expect("array")
        .iter()
        .map(|s| s["seed"].as_u64().expect("seed"))
        .collect();
    assert_eq!(seeds, [1, 2, 3, 4]);
    let out = bin()
        .args([
            "--epidemic",
            "push-pull",
            "--nodes",
            "1000",
            "--fanout",
            "2",
            "--json",
        ])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["complete"], true);
    let out = bin()
        .args(["--push-sum", "--nodes", "500", "--json"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert!(v["epochs"][0]["rounds_1e6"].as_u64().is_some(), "{v}");
    assert!(v["mass_error"].as_f64().is_some_and(|m| m < 1e-12), "{v}");
    let _ = std::fs::remove_dir_all(&dir);
}
