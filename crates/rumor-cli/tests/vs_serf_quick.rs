//! Runs the rumor-vs-Serf harness in quick mode (`bench/vs-serf/run.py
//! --quick`, N = 8, about two minutes) against this build's `rumor` binary,
//! and checks that every phase ran on both systems. It does not check the
//! ratios: that is what `docs/benchmarks.md` is for.
//!
//! Skipped, with a message, when `serf` or `python3` is not installed, or when
//! `RUMOR_SKIP_VS_SERF` is set.

use std::path::Path;
use std::process::Command;

fn on_path(prog: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {prog} >/dev/null 2>&1"))
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

#[test]
fn vs_serf_quick_completes_every_phase() {
    if std::env::var_os("RUMOR_SKIP_VS_SERF").is_some() {
        eprintln!("SKIP vs_serf_quick: RUMOR_SKIP_VS_SERF is set");
        return;
    }
    if !on_path("python3") {
        eprintln!("SKIP vs_serf_quick: python3 is not installed");
        return;
    }
    if !on_path("serf") {
        eprintln!(
            "SKIP vs_serf_quick: HashiCorp Serf is not installed (Debian: apt-get install -y serf)"
        );
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let out = std::env::temp_dir().join(format!("rumor-vs-serf-quick-{}", std::process::id()));
    // `timeout` bounds the whole run: a harness that hangs fails the test
    // instead of stalling the suite (the quick run takes about 90 s).
    let status = Command::new("timeout")
        .current_dir(&root)
        .args([
            "--kill-after=10",
            "600",
            "python3",
            "bench/vs-serf/run.py",
            "--quick",
            "--no-install",
        ])
        .arg("--rumor-bin")
        .arg(env!("CARGO_BIN_EXE_rumor"))
        // Ports 27000..31300: below Linux's ephemeral range (32768+), where
        // other tests' outgoing connections could hold them.
        .arg("--base-port")
        .arg("27000")
        .arg("--out")
        .arg(&out)
        .status()
        .expect("run python3 bench/vs-serf/run.py");
    match status.code() {
        Some(0) => {}
        Some(124) | Some(137) => panic!(
            "bench/vs-serf/run.py --quick did not finish within 600 s; logs under {}",
            out.display()
        ),
        Some(77) => eprintln!("SKIP vs_serf_quick: the harness found no serf"),
        other => panic!(
            "bench/vs-serf/run.py --quick failed ({other:?}); logs under {}",
            out.display()
        ),
    }
}
