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
    let status = Command::new("python3")
        .current_dir(&root)
        .arg("bench/vs-serf/run.py")
        .arg("--quick")
        .arg("--no-install")
        .arg("--rumor-bin")
        .arg(env!("CARGO_BIN_EXE_rumor"))
        .arg("--base-port")
        .arg("41000")
        .arg("--out")
        .arg(&out)
        .status()
        .expect("run python3 bench/vs-serf/run.py");
    match status.code() {
        Some(0) => {}
        // Everything ran except user events, which the agent does not offer
        // yet (POST /v1/event answers 501). Tolerated until the library has
        // them; the harness prints it loudly.
        Some(3) => eprintln!(
            "WARNING vs_serf_quick: rumor user events not available (501); all other phases completed"
        ),
        Some(77) => eprintln!("SKIP vs_serf_quick: the harness found no serf"),
        other => panic!(
            "bench/vs-serf/run.py --quick failed ({other:?}); logs under {}",
            out.display()
        ),
    }
}
