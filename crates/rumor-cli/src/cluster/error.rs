//! [`ClusterError`]: why an agent operation on the node failed, in the
//! kinds the HTTP API maps to status codes (`crate::http`), and the one
//! place a library error becomes one of them, with the agent's wording.

/// Why a cluster operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The caller's input is invalid.
    #[error("{0}")]
    Invalid(String),
    /// A value, key or event over a size limit.
    #[error("{0}")]
    TooLarge(String),
    /// A quota or count limit of the node is full (the message names it).
    #[error("{0}")]
    LimitReached(String),
    /// A key or member that does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The operation does not fit the node's state (e.g. keys without encryption).
    #[error("{0}")]
    Conflict(String),
    /// No seed answered.
    #[error("{0}")]
    Unreachable(String),
    /// The data dir refused a write (a full disk, a failing one): it was
    /// not acknowledged.
    #[error("{0}")]
    Storage(String),
    /// The node is shutting down.
    #[error("the node has stopped")]
    Closed,
}

/// The agent's error for a library error.
pub(crate) fn err(e: rumor::Error) -> ClusterError {
    use rumor::core::kv::{Invalid, KvError};
    use rumor::core::{Error as Core, Rejected};
    use rumor::Error as E;
    match e {
        E::Key(k @ rumor::KeyError::NotInstalled(_)) => ClusterError::NotFound(format!("key: {k}")),
        E::Key(k) => ClusterError::Invalid(format!("key: {k}")),
        E::NoKeyring => ClusterError::Conflict(
            "this agent runs without encryption: start it with --keyring to manage keys".into(),
        ),
        E::Core(Core::LimitReached { limit, detail }) => {
            ClusterError::LimitReached(format!("{} reached: {detail}", limit.name()))
        }
        E::NameConflict { .. } | E::MembershipMismatch { .. } => {
            ClusterError::Conflict(e.to_string())
        }
        E::Core(Core::ForceLeave(f)) => force_leave_err(f),
        E::Core(Core::Event(Rejected::TooLarge(m))) => {
            ClusterError::TooLarge(format!("user event: {m}"))
        }
        E::Core(Core::Query(Rejected::TooLarge(m))) => ClusterError::TooLarge(format!("query: {m}")),
        E::Core(Core::Query(r)) => ClusterError::Invalid(format!("query: {r}")),
        E::Core(Core::Kv(c @ KvError::ContextRequired { .. })) => ClusterError::Conflict(format!(
            "{c}: read the key first (GET /v1/kv/KEY returns its \"context\") and pass that context with the write (header X-Rumor-Context or ?context=; rumor kv put --context)"
        )),
        E::Core(Core::Kv(KvError::Invalid(i @ Invalid::ValueTooLarge(_)))) => {
            ClusterError::TooLarge(format!("key-space write: {i}"))
        }
        E::Core(Core::State(Rejected::TooLarge(m))) => {
            ClusterError::TooLarge(format!("state write: {m}"))
        }
        E::JoinFailed { .. } => ClusterError::Unreachable(e.to_string()),
        E::Storage(e) => ClusterError::Storage(format!(
            "the write was not acknowledged: {e}"
        )),
        E::Stopped | E::Task(_) => ClusterError::Closed,
        other => ClusterError::Invalid(other.to_string()),
    }
}

/// A refused force-leave, as the agent explains it.
fn force_leave_err(e: rumor::core::ForceLeaveError) -> ClusterError {
    use rumor::core::ForceLeaveError as F;
    match e {
        F::UnknownMember(name) => {
            ClusterError::NotFound(format!("force-leave: no member named {name:?} is known here"))
        }
        F::Alive(name) => ClusterError::Conflict(format!(
            "force-leave: {name:?} is alive: it is for dead or unreachable members; use --force (\"force\": true) to mark it left anyway (a live member refutes it)"
        )),
        F::Local(name) => ClusterError::Invalid(format!(
            "force-leave: {name:?} is this agent: use `rumor leave`"
        )),
    }
}
