//! `--event-handler`: run programs for membership and user events, as
//! Serf does.
//!
//! Each `--event-handler [FILTER=]CMD` (repeatable) is one handler; the
//! filter ([`filter`]) picks the event types it runs for. The command runs
//! through `sh -c`, one event at a time in the order they happen, with these
//! variables set:
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
//!
//! When a handler starts it first sees every member alive at that moment
//! as a `member-join` (itself included), as Serf's handlers do; a member
//! that joins while that list is read may be told twice.
//!
//! Each run's exit status, duration and output (the first
//! [`OUTPUT_LIMIT`] bytes of stdout and of stderr) are logged: WARN when it
//! exits non-zero, INFO when it exits 0 with output, DEBUG when it exits 0
//! silently. A run longer than the timeout
//! (`--event-handler-timeout`, default [`DEFAULT_TIMEOUT`]) is killed,
//! logged at WARN and counted in [`SLOW_METRIC`]. Events wait in a
//! bounded backlog per handler (`--event-handler-backlog`, default
//! [`crate::config::DEFAULT_EVENT_HANDLER_BACKLOG`]); when events come
//! faster than a handler finishes, the excess is dropped, counted in
//! `rumor_event_handler_dropped_total{node,reason}` and reported by a
//! warning at most every [`WARN_EVERY`].
//!
//! [`spawn_all`] starts the handlers and returns a [`Handlers`] that stops
//! them: a configuration reload stops the old set and spawns the new one.

pub mod filter;
mod respond;

use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rumor::{Event, EventFilter, MemberEvent, Subscription, UserEvent};
use rumor_core::{MemberEventKind, MemberState};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;

use crate::cluster::{kind_name, SharedCluster};
use filter::EventType;

pub use filter::{HandlerSpec, SpecError};

/// Default longest one handler run may take before it is killed.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Bytes of a run's stdout, and of its stderr, kept for the log (the rest
/// is read and dropped, so the handler never blocks on a full pipe).
pub const OUTPUT_LIMIT: usize = 4096;

/// Shortest time between two warnings about dropped events.
pub const WARN_EVERY: Duration = Duration::from_secs(10);

/// The counter of events the handler never ran for.
pub const DROPPED_METRIC: &str = crate::metrics::EVENT_HANDLER_DROPPED.name;

/// The counter of runs killed for taking longer than the timeout.
pub const SLOW_METRIC: &str = crate::metrics::EVENT_HANDLER_SLOW.name;

/// The histogram of run times.
const DURATION_METRIC: &str = crate::metrics::EVENT_HANDLER_DURATION.name;

/// How the handlers run: shared by every handler of an agent.
#[derive(Clone, Copy, Debug)]
pub struct HandlerOptions {
    /// Events waiting per handler before new ones are dropped (at least 1).
    pub backlog: usize,
    /// Longest one run may take; it is then killed and counted as slow.
    pub timeout: Duration,
    /// Tell each handler first about every member alive now, as
    /// `member-join` (at start; a reload may turn it off).
    pub replay_members: bool,
}

impl Default for HandlerOptions {
    fn default() -> Self {
        HandlerOptions {
            backlog: crate::config::DEFAULT_EVENT_HANDLER_BACKLOG,
            timeout: DEFAULT_TIMEOUT,
            replay_members: true,
        }
    }
}

/// The config file's `event_handler`: one `[FILTER=]CMD` or a list of them.
#[derive(Clone, Debug, serde::Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    /// `event_handler = "CMD"`.
    One(String),
    /// `event_handler = ["member-join=a.sh", "user:deploy=b.sh"]`.
    Many(Vec<String>),
}

impl OneOrMany {
    /// The values, in order.
    pub fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }
}

/// The handlers as a log line shows them: `FILTER=CMD` each, comma-joined
/// filters, `none` when there are none.
pub fn describe(specs: &[HandlerSpec]) -> String {
    if specs.is_empty() {
        return "none".into();
    }
    let one = |spec: &HandlerSpec| {
        let filter: Vec<String> = spec
            .filter
            .iter()
            .map(|t| match t {
                EventType::Member(name) => (*name).to_string(),
                EventType::User(None) => "user".into(),
                EventType::User(Some(n)) => format!("user:{n}"),
                EventType::Query(None) => "query".into(),
                EventType::Query(Some(n)) => format!("query:{n}"),
            })
            .collect();
        format!("{}={}", filter.join(","), spec.command)
    };
    specs.iter().map(one).collect::<Vec<_>>().join(" ")
}

/// Parse every `--event-handler` value; the error is one line naming the bad one.
pub fn parse_all(args: &[String]) -> Result<Vec<HandlerSpec>, SpecError> {
    args.iter().map(|a| HandlerSpec::parse(a)).collect()
}

/// Running handlers; [`Handlers::stop`] (or dropping it) stops them and
/// kills a run in progress.
#[derive(Debug, Default)]
pub struct Handlers {
    tasks: Vec<JoinHandle<()>>,
}

impl Handlers {
    /// Stop every handler now.
    pub fn stop(&mut self) {
        for t in self.tasks.drain(..) {
            t.abort();
        }
    }
}

impl Drop for Handlers {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Start one task per handler in `specs` for the events of `cluster`. Each
/// subscribes before it returns (no event after this call is missed), then,
/// with [`HandlerOptions::replay_members`], replays the members alive now
/// as `member-join`. To reload: drop (or [`Handlers::stop`]) the old set,
/// then call this with the new specs. Query-only handlers
/// start no task here (queries are answered elsewhere).
pub fn spawn_all(
    cluster: SharedCluster,
    specs: Vec<HandlerSpec>,
    opts: HandlerOptions,
) -> Handlers {
    // One task answers queries: the built-in ones and `query:` handlers.
    let answering: Vec<HandlerSpec> = specs
        .iter()
        .filter(|s| s.filter.iter().any(|t| matches!(t, EventType::Query(_))))
        .cloned()
        .collect();
    let mut tasks = Vec::new();
    let Ok(queries) = cluster.subscribe(EventFilter::QUERY) else {
        return Handlers { tasks }; // the node has stopped
    };
    tasks.push(tokio::spawn(respond::run(
        cluster.clone(),
        answering,
        opts,
        queries,
    )));
    for spec in specs.into_iter().filter(HandlerSpec::wants_events) {
        let Ok(events) = cluster.subscribe(EventFilter::MEMBER | EventFilter::USER) else {
            break;
        };
        tracing::info!(
            filter = %spec.filter_text(),
            command = %spec.command,
            "event handler started"
        );
        tasks.push(tokio::spawn(run(cluster.clone(), spec, opts, events)));
    }
    Handlers { tasks }
}

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
        ("RUMOR_USER_ORIGIN".to_string(), ev.origin.to_string()),
    ]
}

/// Whether `spec` runs for `ev` (a membership or a user event).
fn wanted_by(ev: &Event, spec: &HandlerSpec) -> bool {
    match ev {
        Event::Member(ev) => spec.wants_member(ev.kind),
        Event::User(ev) => spec.wants_user(&ev.name),
        _ => false,
    }
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

/// One handler: replay the alive members, then run for every wanted event
/// until the task is aborted or the node stops.
async fn run(
    cluster: SharedCluster,
    spec: HandlerSpec,
    opts: HandlerOptions,
    mut events: Subscription,
) {
    let backlog = opts.backlog.max(1);
    let mut drops = Drops::new(cluster.name(), backlog);
    let (tx, mut rx) = mpsc::channel::<Event>(backlog);
    let (self_name, self_addr) = (cluster.name().to_string(), cluster.addr().to_string());
    let command = spec.command.clone();
    let node = self_name.clone();
    let worker = tokio::spawn(async move {
        while let Some(job) = rx.recv().await {
            let (env, stdin, what) = match &job {
                Event::Member(ev) => (
                    handler_env(ev, &self_name, &self_addr),
                    stdin_line(ev).into_bytes(),
                    format!("{} {}", kind_name(ev.kind), ev.member.name),
                ),
                Event::User(ev) => (
                    user_env(ev, &self_name, &self_addr),
                    ev.payload.clone(),
                    format!("user {}", ev.name),
                ),
                _ => continue,
            };
            run_one(&command, env, &stdin, &what, &node, opts.timeout, 0).await;
        }
    });
    if opts.replay_members && spec.wants_member(MemberEventKind::Joined) {
        if let Ok(members) = cluster.members().await {
            let now = std::time::SystemTime::now();
            for m in members
                .into_iter()
                .filter(|m| m.state == MemberState::Alive)
            {
                let ev = Arc::new(MemberEvent {
                    kind: MemberEventKind::Joined,
                    member: m,
                    at: now,
                });
                if tx.try_send(Event::Member(ev)).is_err() {
                    drops.record(1, "backlog_full");
                }
            }
        }
    }
    loop {
        match events.recv().await {
            Ok(job) if wanted_by(&job, &spec) => {
                if tx.try_send(job).is_err() {
                    drops.record(1, "backlog_full");
                }
            }
            Ok(_) => {}
            Err(broadcast::error::RecvError::Lagged(n)) => drops.record(n, "lagged"),
            Err(broadcast::error::RecvError::Closed) => break,
        }
    }
    drop(tx);
    let _ = worker.await;
}

/// Read all of `r`, keeping the first `limit` bytes; the flag says
/// whether more came.
async fn capture(r: Option<impl AsyncRead + Unpin>, limit: usize) -> (Vec<u8>, bool) {
    let Some(mut r) = r else {
        return (Vec::new(), false);
    };
    let mut kept = Vec::new();
    let mut more = false;
    let mut buf = [0u8; 4096];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let room = limit.saturating_sub(kept.len());
                kept.extend_from_slice(&buf[..n.min(room)]);
                more |= n > room;
            }
        }
    }
    (kept, more)
}

/// Output as one log field: lossy UTF-8, trailing newline trimmed, `…` when cut.
fn output_text((bytes, more): &(Vec<u8>, bool)) -> String {
    let shown = &bytes[..bytes.len().min(OUTPUT_LIMIT)];
    let mut s = String::from_utf8_lossy(shown).trim_end().to_string();
    if *more || bytes.len() > OUTPUT_LIMIT {
        s.push('…');
    }
    s
}

/// Run `command` once for `what`, logging how it went; its stdout (at
/// most `keep` bytes; `None` if it failed, timed out or wrote more).
pub(crate) async fn run_one(
    command: &str,
    env: Vec<(String, String)>,
    input: &[u8],
    what: &str,
    node: &str,
    timeout: Duration,
    keep: usize,
) -> Option<Vec<u8>> {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(command)
        .envs(env)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let started = Instant::now();
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(event = what, "cannot run event handler {command:?}: {e}");
            return None;
        }
    };
    let stdin = child.stdin.take();
    let input = input.to_vec();
    // Feed stdin while the output is read: a handler that writes before it
    // reads never deadlocks against us.
    let feed = async move {
        if let Some(mut s) = stdin {
            let _ = s.write_all(&input).await;
        }
    };
    let out = capture(child.stdout.take(), keep.max(OUTPUT_LIMIT));
    let err = capture(child.stderr.take(), OUTPUT_LIMIT);
    let all = async {
        let ((), out, err, status) = tokio::join!(feed, out, err, child.wait());
        (out, err, status)
    };
    let res = tokio::time::timeout(timeout, all).await;
    metrics::histogram!(DURATION_METRIC, "node" => node.to_string())
        .record(started.elapsed().as_secs_f64());
    match res {
        Ok((out, err, Ok(status))) => {
            let ms = started.elapsed().as_millis() as u64;
            let (stdout, stderr) = (output_text(&out), output_text(&err));
            let answer =
                (status.success() && !(out.1 || out.0.len() > keep)).then(|| out.0.clone());
            if status.success() && stdout.is_empty() && stderr.is_empty() {
                // A silent success: one per event and member adds up (the
                // replay alone is one per member), so only at DEBUG.
                tracing::debug!(event = what, duration_ms = ms, %status, "event handler ran");
            } else if status.success() {
                tracing::info!(event = what, duration_ms = ms, %status, stdout, stderr, "event handler ran");
            } else {
                tracing::warn!(event = what, duration_ms = ms, %status, stdout, stderr, "event handler failed: {status}");
            }
            answer
        }
        Ok((_, _, Err(e))) => {
            tracing::warn!(event = what, "event handler failed: {e}");
            None
        }
        Err(_) => {
            metrics::counter!(SLOW_METRIC, "node" => node.to_string()).increment(1);
            tracing::warn!(
                event = what,
                "event handler ran over {timeout:?} (--event-handler-timeout): killed (counted in {SLOW_METRIC})"
            );
            let _ = child.kill().await;
            None
        }
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
