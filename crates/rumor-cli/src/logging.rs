//! Logging to stderr: text or JSON lines, a level that SIGHUP can change,
//! and ANSI colour only when stderr is a terminal (never in files or
//! journald).
//!
//! The filter is `RUMOR_LOG` (an `EnvFilter` directive) when set, else the
//! configured level (`--log-level` / `log_level`). At `info`, the library's
//! own member-event line (`rumor::driver`, which names events `Joined`,
//! `Failed`, ...) is left out: the agent logs each member event itself under
//! the API's name (`member-join`, `member-failed`, ...), see
//! [`log_member_events`].

use std::io::IsTerminal;
use std::sync::OnceLock;

use anyhow::{bail, Result};
use rumor::{Event, EventFilter};
use tokio::sync::broadcast;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter, Registry};

use crate::cluster::{kind_name, SharedCluster};

/// The levels `--log-level` accepts.
pub const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];

/// The handle that swaps the filter at run time (`None`: `RUMOR_LOG` rules,
/// or logging was set up by someone else).
static RELOAD: OnceLock<reload::Handle<EnvFilter, Registry>> = OnceLock::new();

/// Check a `--log-level` value; the error lists the accepted ones.
pub fn check_level(level: &str) -> Result<String> {
    let l = level.trim().to_ascii_lowercase();
    if !LEVELS.contains(&l.as_str()) {
        bail!(
            "log_level {level:?} is not a level: use one of {}",
            LEVELS.join(", ")
        );
    }
    Ok(l)
}

/// The filter for `level`: at `info` and above the library's member-event
/// line is left out (the agent logs those events under the API's names).
fn filter_for(level: &str) -> EnvFilter {
    let directive = match level {
        "info" | "warn" | "error" | "off" => format!("{level},rumor::driver=warn"),
        other => other.to_string(),
    };
    // Only levels from `LEVELS` reach here, each a valid directive.
    EnvFilter::try_new(&directive).unwrap_or_else(|_| EnvFilter::new("info"))
}

/// Whether `RUMOR_LOG` decides the filter (it then wins over the level).
pub fn env_filter_set() -> bool {
    std::env::var_os("RUMOR_LOG").is_some_and(|v| !v.is_empty())
}

/// Set up logging to stderr: JSON lines or text (coloured only on a
/// terminal), filtered by `RUMOR_LOG` if set, else by `level`.
pub fn init(json: bool, level: &str) {
    let (filter, reloadable) = match EnvFilter::try_from_env("RUMOR_LOG") {
        Ok(f) if env_filter_set() => (f, false),
        _ => (filter_for(level), true),
    };
    let (filter, handle) = reload::Layer::new(filter);
    let ansi = std::io::stderr().is_terminal();
    let registry = tracing_subscriber::registry().with(filter);
    let installed = if json {
        registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_writer(std::io::stderr),
            )
            .try_init()
    } else {
        registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_ansi(ansi)
                    .with_writer(std::io::stderr),
            )
            .try_init()
    };
    if installed.is_ok() && reloadable {
        let _ = RELOAD.set(handle);
    }
}

/// Change the level (SIGHUP). Returns `false` when the level cannot be
/// changed: `RUMOR_LOG` is set (it wins), or logging is not ours.
pub fn set_level(level: &str) -> bool {
    match RELOAD.get() {
        Some(h) => h.reload(filter_for(level)).is_ok(),
        None => false,
    }
}

/// Log every membership event at INFO under its API name until the node
/// stops: `member-join`, `member-failed`, ...; and after a
/// `member-suspect`, who raised the suspicion and why.
pub async fn log_member_events(cluster: SharedCluster) {
    let Ok(mut events) = cluster.subscribe(EventFilter::MEMBER | EventFilter::SUSPECTED) else {
        return;
    };
    loop {
        match events.recv().await {
            Ok(Event::Member(ev)) => tracing::info!(
                event = kind_name(ev.kind),
                member = %ev.member.name,
                addr = %ev.member.addr,
                incarnation = ev.member.incarnation,
                "{} {}",
                kind_name(ev.kind),
                ev.member.name
            ),
            Ok(Event::Suspected(s)) => tracing::info!(
                member = %s.name,
                accuser = %s.accuser,
                cause = %s.cause,
                "suspicion of {} raised by {}: {}",
                s.name,
                s.accuser,
                s.cause
            ),
            Ok(_) => {}
            Err(broadcast::error::RecvError::Lagged(n)) => {
                tracing::warn!("{n} node events were missed by the log (it fell behind)");
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels() {
        assert_eq!(check_level("DEBUG").unwrap(), "debug");
        let e = check_level("loud").unwrap_err().to_string();
        assert!(
            e.contains("loud") && e.contains("debug") && !e.contains('\n'),
            "{e}"
        );
        assert!(filter_for("info")
            .to_string()
            .contains("rumor::driver=warn"));
        assert!(!filter_for("debug").to_string().contains("rumor::driver"));
    }
}
