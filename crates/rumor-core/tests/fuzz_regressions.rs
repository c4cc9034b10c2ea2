//! Inputs the fuzzer found crashes with (and a few sample inputs of each
//! node target, `seed-*`), replayed on every `cargo test`
//! through the same code as the fuzz targets (`fuzz/fuzz_targets/script.rs`
//! and `common.rs` are compiled into this test): a fresh node plays the
//! saved script, with its timers, and must neither panic nor send anything
//! malformed.
//!
//! Inputs live in `tests/fuzz-corpus/<target>/`, one script per file, named
//! after what they found; `<target>` picks the op table the target uses.
//! Turning a crash of `node_messages` into a script:
//! `RUMOR_FUZZ_SCRIPT_OUT=<file> cargo +nightly fuzz run node_messages <crash>`
//! (see fuzz/README.md). Inputs of `node_datagram` and `node_stream` are
//! scripts already.

#[allow(dead_code)]
#[path = "../../../fuzz/fuzz_targets/common.rs"]
mod common;
#[path = "../../../fuzz/fuzz_targets/script.rs"]
mod script;

use std::path::{Path, PathBuf};

/// The saved inputs of `target`, sorted by name.
fn inputs(target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz-corpus")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    files
}

/// The op table of `target` (as in its fuzz target).
fn ops(target: &str) -> &'static [script::Op] {
    match target {
        "node_stream" => &script::STREAM_OPS,
        _ => &script::ALL_OPS,
    }
}

/// Play one saved input: whether it ran without a panic.
fn plays(target: &str, path: &Path) -> bool {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    std::panic::catch_unwind(|| script::run(&bytes, ops(target))).is_ok()
}

/// Play one saved input, naming it if it panics.
fn replay(target: &str, path: &Path) {
    assert!(plays(target, path), "{} panicked", path.display());
}

/// Play the single input `tests/fuzz-corpus/<target>/<name>`.
fn replay_one(target: &str, name: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz-corpus")
        .join(target)
        .join(name);
    replay(target, &path);
}

/// Saved inputs that still crash rumor-core: each has its own ignored test
/// below until the fix lands, and the sweep skips it.
const OPEN: [(&str, &str); 0] = [];

/// Every saved input not listed in [`OPEN`] plays without a panic.
#[test]
fn every_saved_input_replays_without_panic() {
    let mut played = 0;
    let mut panicked = Vec::new();
    for target in ["node_datagram", "node_stream", "node_messages"] {
        for path in inputs(target) {
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if OPEN.contains(&(target, name)) {
                continue;
            }
            if !plays(target, &path) {
                panicked.push(path.display().to_string());
            }
            played += 1;
        }
    }
    assert!(played > 0, "no saved input was played");
    assert!(panicked.is_empty(), "inputs that panicked: {panicked:#?}");
}

/// A forged aggregate epoch `u64::MAX`: the leader's next epoch tick adds 1.
#[test]
fn aggregate_epoch_max() {
    replay_one("node_messages", "aggregate-epoch-max");
}

/// Two aggregate shares of about 1e308: their sum is infinite, and the node
/// then gossips a share its peers refuse to decode ("non-finite number").
#[test]
fn aggregate_share_overflow() {
    replay_one("node_messages", "aggregate-share-overflow");
}

/// A user event at Lamport time `u64::MAX`, then a local `send_event`: the
/// clock's tick adds 1.
#[test]
fn lamport_clock_max() {
    replay_one("node_messages", "lamport-clock-max");
}

/// A state delta for the node's own name at version `u64::MAX`: the node
/// re-asserts its own state above it and adds 1.
#[test]
fn state_version_max() {
    replay_one("node_messages", "state-version-max");
}
