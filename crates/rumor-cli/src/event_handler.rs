//! `--event-handler`: run a program for each membership event and each user
//! event, as Serf does.
//!
//! The command runs through `sh -c`, one event at a time in the order they
//! happen, with these variables set:
//!
//! | variable | value |
//! |---|---|
//! | `RUMOR_EVENT` | `member-join`, `member-update`, `member-suspect`, `member-alive`, `member-failed`, `member-leave`, `member-reap` |
//! | `RUMOR_SELF_NAME`, `RUMOR_SELF_ADDR` | the local member |
//! | `RUMOR_MEMBER_NAME`, `RUMOR_MEMBER_ADDR`, `RUMOR_MEMBER_STATUS`, `RUMOR_MEMBER_INCARNATION` | the member the event is about |
//! | `RUMOR_TAG_<KEY>` | each of its tags, the key upper-cased, non-alphanumerics as `_` |
//!
//! Its standard input gets one line `name<TAB>addr<TAB>status<TAB>k=v,k=v`.
//!
//! For a user event `RUMOR_EVENT` is `user`, with `RUMOR_USER_EVENT` (the
//! event name), `RUMOR_USER_LTIME` (its Lamport time), `RUMOR_USER_ORIGIN`
//! (the sender) and the `RUMOR_SELF_*` variables; the payload, as sent, is
//! the standard input.
//! A handler that runs longer than [`HANDLER_TIMEOUT`] is killed. Events
//! wait in a bounded backlog (`--event-handler-backlog`, default
//! [`crate::config::DEFAULT_EVENT_HANDLER_BACKLOG`]); when events come
//! faster than handlers finish, the excess is dropped, counted in
//! `rumor_event_handler_dropped_total{node,reason}` and reported by a
//! warning at most every [`WARN_EVERY`].

use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::process::Command;
use tokio::sync::{broadcast, mpsc};

use crate::cluster::{kind_name, MemberEvent, SharedCluster, UserEvent};

/// Longest one handler run may take.
pub const HANDLER_TIMEOUT: Duration = Duration::from_secs(30);

/// Shortest time between two warnings about dropped events.
pub const WARN_EVERY: Duration = Duration::from_secs(10);

/// The counter of events the handler never ran for.
pub const DROPPED_METRIC: &str = "rumor_event_handler_dropped_total";

/// Events dropped before reaching the handler: counted at once, warned
/// about at most every [`WARN_EVERY`] with the number since the last warning.
struct Drops {
    node: String,
    backlog: usize,
    unreported: u64,
    last_warn: Option<Instant>,
}

impl Drops {
    fn new(node: &str, backlog: usize) -> Self {
        metrics::describe_counter!(
            DROPPED_METRIC,
            "Events the event handler never ran for: its backlog was full (backlog_full) or the node's event channel overran (lagged)."
        );
        Drops {
            node: node.to_string(),
            backlog,
            unreported: 0,
            last_warn: None,
        }
    }

    /// Record `n` events dropped for `reason` (`backlog_full` or `lagged`).
    fn record(&mut self, n: u64, reason: &'static str) {
        metrics::counter!(DROPPED_METRIC, "node" => self.node.clone(), "reason" => reason)
            .increment(n);
        self.unreported = self.unreported.saturating_add(n);
        let now = Instant::now();
        if self
            .last_warn
            .is_none_or(|t| now.duration_since(t) >= WARN_EVERY)
        {
            tracing::warn!(
                dropped = self.unreported,
                backlog = self.backlog,
                "event handler is behind: {} event(s) dropped since the last warning (backlog of {} full; see {DROPPED_METRIC} and --event-handler-backlog)",
                self.unreported,
                self.backlog
            );
            self.unreported = 0;
            self.last_warn = Some(now);
        }
    }
}

/// The environment a handler gets for `ev`.
pub fn handler_env(ev: &MemberEvent, self_name: &str, self_addr: &str) -> Vec<(String, String)> {
    let m = &ev.member;
    let mut env = vec![
        ("RUMOR_EVENT".to_string(), kind_name(ev.kind).to_string()),
        ("RUMOR_SELF_NAME".to_string(), self_name.to_string()),
        ("RUMOR_SELF_ADDR".to_string(), self_addr.to_string()),
        ("RUMOR_MEMBER_NAME".to_string(), m.name.to_string()),
        ("RUMOR_MEMBER_ADDR".to_string(), m.addr.to_string()),
        (
            "RUMOR_MEMBER_STATUS".to_string(),
            m.state.as_str().to_string(),
        ),
        (
            "RUMOR_MEMBER_INCARNATION".to_string(),
            m.incarnation.to_string(),
        ),
    ];
    for (k, v) in m.tags.iter() {
        let key: String = k
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_uppercase()
                } else {
                    '_'
                }
            })
            .collect();
        env.push((format!("RUMOR_TAG_{key}"), v.clone()));
    }
    env
}

/// The environment a handler gets for the user event `ev`.
pub fn user_env(ev: &UserEvent, self_name: &str, self_addr: &str) -> Vec<(String, String)> {
    vec![
        ("RUMOR_EVENT".to_string(), "user".to_string()),
        ("RUMOR_SELF_NAME".to_string(), self_name.to_string()),
        ("RUMOR_SELF_ADDR".to_string(), self_addr.to_string()),
        ("RUMOR_USER_EVENT".to_string(), ev.name.clone()),
        ("RUMOR_USER_LTIME".to_string(), ev.ltime.to_string()),
        ("RUMOR_USER_ORIGIN".to_string(), ev.origin.clone()),
    ]
}

/// What a handler runs for: a membership event or a user event.
enum Job {
    Member(Arc<MemberEvent>),
    User(Arc<UserEvent>),
}

/// The line written to the handler's standard input.
pub fn stdin_line(ev: &MemberEvent) -> String {
    let m = &ev.member;
    let tags: Vec<String> = m.tags.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!(
        "{}\t{}\t{}\t{}\n",
        m.name,
        m.addr,
        m.state.as_str(),
        tags.join(",")
    )
}

/// Run `command` for every event of `cluster` until the task is aborted,
/// with at most `backlog` events waiting (at least 1).
pub async fn run(cluster: SharedCluster, command: String, backlog: usize) {
    let mut events = cluster.subscribe();
    let mut users = cluster.subscribe_user();
    let backlog = backlog.max(1);
    let mut drops = Drops::new(cluster.name(), backlog);
    let (tx, mut rx) = mpsc::channel::<Job>(backlog);
    let (self_name, self_addr) = (cluster.name().to_string(), cluster.addr().to_string());
    let worker = tokio::spawn(async move {
        while let Some(job) = rx.recv().await {
            let (env, stdin, what) = match &job {
                Job::Member(ev) => (
                    handler_env(ev, &self_name, &self_addr),
                    stdin_line(ev).into_bytes(),
                    format!("{} {}", kind_name(ev.kind), ev.member.name),
                ),
                Job::User(ev) => (
                    user_env(ev, &self_name, &self_addr),
                    ev.payload.clone(),
                    format!("user {}", ev.name),
                ),
            };
            run_one(&command, env, &stdin, &what).await;
        }
    });
    loop {
        let job = tokio::select! {
            r = events.recv() => r.map(Job::Member),
            r = users.recv() => r.map(Job::User),
        };
        match job {
            Ok(job) => {
                if tx.try_send(job).is_err() {
                    drops.record(1, "backlog_full");
                }
            }
            Err(broadcast::error::RecvError::Lagged(n)) => drops.record(n, "lagged"),
            Err(broadcast::error::RecvError::Closed) => break,
        }
    }
    drop(tx);
    let _ = worker.await;
}

async fn run_one(command: &str, env: Vec<(String, String)>, input: &[u8], what: &str) {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(command)
        .envs(env)
        .stdin(Stdio::piped())
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!("cannot run event handler: {e}");
            return;
        }
    };
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(input).await;
    }
    match tokio::time::timeout(HANDLER_TIMEOUT, child.wait()).await {
        Ok(Ok(status)) if !status.success() => {
            tracing::warn!(event = what, "event handler exited with {status}");
        }
        Ok(Err(e)) => tracing::warn!("event handler failed: {e}"),
        Err(_) => {
            tracing::warn!("event handler ran over {HANDLER_TIMEOUT:?}: killed");
            let _ = child.kill().await;
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rumor_core::{Member, MemberEventKind, MemberState, Tags};
    use std::sync::Arc;

    #[test]
    fn env_names_the_event() {
        let mut tags = Tags::new();
        tags.insert("role-x".into(), "web".into());
        let ev = MemberEvent {
            kind: MemberEventKind::Failed,
            member: Member {
                name: Arc::from("b"),
                addr: "127.0.0.1:2".parse().unwrap(),
                incarnation: 3,
                state: MemberState::Dead,
                tags: Arc::new(tags),
                protocol: (1, 1),
            },
            at: std::time::SystemTime::now(),
        };
        let env = handler_env(&ev, "a", "127.0.0.1:1");
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("RUMOR_EVENT"), Some("member-failed"));
        assert_eq!(get("RUMOR_MEMBER_STATUS"), Some("dead"));
        assert_eq!(get("RUMOR_TAG_ROLE_X"), Some("web"));
        assert_eq!(stdin_line(&ev), "b\t127.0.0.1:2\tdead\trole-x=web\n");
    }
}
