//! Joining that survives the real world: `--retry-join` seeds are resolved
//! again (DNS names, SRV names) and tried every `retry_interval` in the
//! background while the agent runs, until one answers or `retry_max`
//! attempts have failed; and [`JoinState`], what readiness
//! (`/v1/health/ready`) knows about it.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Result};

use crate::cluster::{resolve_seeds_with, SharedCluster};

/// Whether this agent has joined a cluster, and if not, why.
#[derive(Debug, Default)]
pub struct JoinState {
    joined: AtomicBool,
    waiting: Mutex<Option<String>>,
}

impl JoinState {
    /// A state that is joined already (nothing to join: a first member).
    pub fn joined() -> Arc<Self> {
        let s = JoinState::default();
        s.joined.store(true, Ordering::Relaxed);
        Arc::new(s)
    }

    /// A state waiting for a join; `why` is what readiness reports.
    pub fn waiting(why: String) -> Arc<Self> {
        Arc::new(JoinState {
            joined: AtomicBool::new(false),
            waiting: Mutex::new(Some(why)),
        })
    }

    /// Record a successful join.
    pub fn set_joined(&self) {
        self.joined.store(true, Ordering::Relaxed);
        if let Ok(mut w) = self.waiting.lock() {
            *w = None;
        }
    }

    /// Record why the agent is still not joined.
    pub fn set_waiting(&self, why: String) {
        if let Ok(mut w) = self.waiting.lock() {
            *w = Some(why);
        }
    }

    /// Whether a join succeeded (or none was needed).
    pub fn is_joined(&self) -> bool {
        self.joined.load(Ordering::Relaxed)
    }

    /// Why the agent is not joined yet, if it is not.
    pub fn reason(&self) -> Option<String> {
        if self.is_joined() {
            return None;
        }
        self.waiting.lock().ok().and_then(|w| w.clone())
    }
}

/// Resolve each seed on its own: the addresses of those that resolve, and
/// one message per seed that does not. SRV seeds are looked up through
/// `dns` (the system's name servers when empty).
pub async fn resolve_each(seeds: &[String], dns: &[SocketAddr]) -> (Vec<SocketAddr>, Vec<String>) {
    let mut addrs = Vec::new();
    let mut problems = Vec::new();
    for s in seeds {
        match resolve_seeds_with(std::slice::from_ref(s), dns).await {
            Ok(found) => {
                for a in found {
                    if !addrs.contains(&a) {
                        addrs.push(a);
                    }
                }
            }
            Err(e) => problems.push(format!("{e:#}")),
        }
    }
    (addrs, problems)
}

/// One attempt: resolve every seed again, join those that resolved.
/// Returns how many answered, or why none did.
pub async fn attempt(
    cluster: &SharedCluster,
    seeds: &[String],
    dns: &[SocketAddr],
) -> Result<usize> {
    let (addrs, mut problems) = resolve_each(seeds, dns).await;
    if !addrs.is_empty() {
        match cluster.join(addrs).await {
            Ok(n) => return Ok(n),
            Err(e) => problems.push(crate::join_hint::explain(&e.to_string())),
        }
    }
    bail!("{}", problems.join("; "))
}

/// Retry joining `seeds` every `interval` until one answers (`Ok`) or
/// `max` attempts failed (`Err`, `max` 0: never). Each failure is one WARN
/// line with its reason; `state` says what readiness reports meanwhile.
pub async fn run(
    cluster: SharedCluster,
    seeds: Vec<String>,
    dns: Vec<SocketAddr>,
    interval: Duration,
    max: u32,
    state: Arc<JoinState>,
) -> Result<()> {
    let mut attempts = 0u32;
    loop {
        attempts = attempts.saturating_add(1);
        match attempt(&cluster, &seeds, &dns).await {
            Ok(n) => {
                tracing::info!(
                    attempts,
                    "retry-join: joined through {n} seed address(es) of {seeds:?}"
                );
                state.set_joined();
                return Ok(());
            }
            Err(e) => {
                let limit = if max == 0 {
                    String::new()
                } else {
                    format!(" of {max}")
                };
                tracing::warn!(
                    attempt = attempts,
                    "retry-join: attempt {attempts}{limit} failed: {e:#}; next in {interval:?}"
                );
                state.set_waiting(format!(
                    "not joined: retry-join attempt {attempts}{limit} failed: {e:#}"
                ));
                if max != 0 && attempts >= max {
                    bail!(
                        "retry-join: gave up after {attempts} attempt(s) (retry_max {max}): {e:#}"
                    );
                }
            }
        }
        tokio::time::sleep(interval).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_state() {
        let s = JoinState::waiting("not joined: retrying".into());
        assert!(!s.is_joined());
        assert_eq!(s.reason().as_deref(), Some("not joined: retrying"));
        s.set_joined();
        assert!(s.is_joined() && s.reason().is_none());
        assert!(JoinState::joined().is_joined());
    }

    #[tokio::test]
    async fn each_seed_resolves_on_its_own() {
        let seeds = vec!["127.0.0.1:1".to_string(), "127.0.0.1:x".to_string()];
        let (addrs, problems) = resolve_each(&seeds, &[]).await;
        assert_eq!(addrs, vec!["127.0.0.1:1".parse::<SocketAddr>().unwrap()]);
        assert_eq!(problems.len(), 1, "{problems:?}");
    }
}
