//! `rumor-testbed`: see the crate's README.

use clap::{Parser, Subcommand};
use rumor_testbed::{hosts, selftest};
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "rumor-testbed",
    about = "Multi-host testbed for rumor: network namespaces, a link emulator, a nemesis and a checker (root)"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Measure the emulator: added latency, delay accuracy, packet-rate ceiling.
    Selftest {
        /// Round trips per measurement.
        #[arg(long, default_value_t = 2000)]
        pings: usize,
        /// One-way delay for the accuracy check, in ms.
        #[arg(long, default_value_t = 20.0)]
        delay_ms: f64,
    },
    /// Remove the namespaces a killed run left behind.
    Cleanup,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::Selftest { pings, delay_ms } => selftest::run(
            pings.max(10),
            Duration::from_secs_f64(delay_ms.max(0.0) / 1e3),
        )
        .map(|r| {
            println!("{}", serde_json::to_string_pretty(&r).unwrap_or_default());
        }),
        Cmd::Cleanup => hosts::cleanup().map(|n| println!("removed {n} namespaces")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rumor-testbed: {e:#}");
            ExitCode::from(2)
        }
    }
}
