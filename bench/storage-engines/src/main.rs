//! Runs every workload against redb and fjall in a scratch directory.
//!
//! `storage-engines [DIR] [KEYS] [SECS]`: DIR defaults to ./scratch (on the
//! disk to measure), KEYS to 1,000,000, SECS (per timed run) to 3.

use std::path::{Path, PathBuf};
use storage_engines::workload::{bulk, group, interval, settle};
use storage_engines::{Engine, Fjall, Redb};

fn fresh(base: &Path, name: &str) -> PathBuf {
    let d = base.join(name);
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn run<E: Engine>(base: &Path, keys: u64, secs: f64) {
    for n in [1, 8, 64, 256] {
        settle();
        group::<E>(&fresh(base, "group"), n, secs);
    }
    settle();
    interval::<E>(&fresh(base, "interval"), secs);
    settle();
    bulk::<E>(&fresh(base, "bulk"), keys);
    let _ = std::fs::remove_dir_all(base);
}

fn main() {
    let mut args = std::env::args().skip(1);
    let base = PathBuf::from(args.next().unwrap_or_else(|| "scratch".into()));
    let keys = args.next().map_or(1_000_000, |s| s.parse().unwrap());
    let secs = args.next().map_or(3.0, |s| s.parse().unwrap());
    let only = std::env::var("ENGINE").unwrap_or_default();
    if only.is_empty() || only == "redb" {
        run::<Redb>(&base.join("redb"), keys, secs);
    }
    if only.is_empty() || only == "fjall" {
        run::<Fjall>(&base.join("fjall"), keys, secs);
    }
}
