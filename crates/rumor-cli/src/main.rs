//! The `rumor` binary: the agent (a cluster member with an HTTP API, a
//! dashboard and Prometheus metrics), the CLI client that talks to it, and
//! an in-process demo.
//!
//! Modules, one concept each: [`cli`] arguments, [`config`] the config file
//! and its merge, [`cluster`] the boundary to the node, [`agent`] the agent
//! runtime, [`http`] the API, [`http_access`] who may use it, [`http_query`] `POST /v1/query`, [`dashboard`] the web page, [`metrics`] the
//! Prometheus exporter, [`client`] the client commands ([`client_query`] `rumor query`, [`client_keys`] `rumor keys`), [`demo`] the demo,
//! [`event_handler`] the `--event-handler` runner, [`info`] `/v1/info`,
//! [`member_filter`] the `members` filters, [`snapshot`] the snapshot file, [`atomic_file`] files replaced whole,
//! [`logging`] the log setup, [`retry_join`] joining in the background,
//! [`join_hint`] join errors explained, [`reload`] SIGHUP, [`keyring_sync`] the keyring across the cluster and on disk,
//! [`history`] the event history, [`timeseries`] the last hour's samples.

mod agent;
mod atomic_file;
mod cli;
mod client;
mod client_keys;
mod client_query;
mod cluster;
mod config;
mod dashboard;
mod demo;
mod event_handler;
mod history;
mod http;
mod http_access;
mod http_query;
mod info;
mod join_hint;
mod keyring_sync;
mod kv_backup;
mod kv_context;
mod logging;
mod member_filter;
mod metrics;
mod process_metrics;
mod reload;
mod retry_join;
mod sim;
mod snapshot;
mod timeseries;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Agent(args) => agent_runtime().and_then(|rt| rt.block_on(agent::run(*args))),
        Command::Demo(args) => runtime().and_then(|rt| {
            agent::init_logging(false, "warn");
            rt.block_on(demo::run(args))
        }),
        Command::Members(a) => client::members(&a),
        Command::Info(a) => client::info(&a),
        Command::Join(a) => client::join(&a),
        Command::Leave(a) => client::leave(&a),
        Command::ForceLeave(a) => client::force_leave(&a),
        Command::Event(a) => client::event(&a),
        Command::Query(a) => client_query::query(&a),
        Command::Monitor(a) => client::monitor(&a),
        Command::Kv(k) => client::kv(&k.op),
        Command::State(a) => client::state(&a.op),
        Command::Agg(a) => client::agg(&a),
        Command::Keys(k) => client_keys::keys(&k.op),
        Command::Tags(t) => client::tags(&t.op),
        Command::Sim(a) => return sim::run(a.args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line: the chain of causes, outermost first.
            eprintln!("rumor: {}", format!("{e:#}").replace('\n', " "));
            // A usage error (as clap's own) is 2; anything else 1.
            if e.is::<member_filter::BadFilter>() {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// The demo's runtime: several nodes and their HTTP servers in one process.
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| anyhow::anyhow!("cannot start the runtime: {e}"))
}

/// The agent's runtime: one node's work is a few packets a second, which one
/// thread serves with fewer wake-ups (no hand-offs between workers) and less
/// memory (no per-worker stacks and allocator arenas) than a thread pool.
fn agent_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| anyhow::anyhow!("cannot start the runtime: {e}"))
}
