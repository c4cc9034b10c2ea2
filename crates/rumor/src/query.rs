//! Queries from the application's side: ask with [`crate::Node::query`]
//! and read the acks and answers from a [`QueryStream`]; answer the
//! queries this node is selected for, delivered as
//! [`crate::Event::Query`], with [`crate::Node::respond`].
//!
//! The driver decides whether this node is selected (every filter must
//! match: a name or tag pattern is a regular expression that must match
//! the whole name or value), acks at once when the asker wants acks, and
//! answers the built-in [`PING`] itself. Patterns from the network are
//! compiled with a size limit, so a hostile pattern costs little; one that
//! does not compile selects nobody.

use std::sync::Arc;
use std::time::Duration;

use regex::{Regex, RegexBuilder};
use rumor_core::message::Query;
pub use rumor_core::message::QueryFilter;
pub use rumor_core::query::QueryParams as QueryOptions;
use rumor_core::Tags;
use tokio::sync::mpsc;

/// The built-in query every node answers (with an empty payload): who is
/// reachable now.
pub const PING: &str = "_rumor_ping";

/// Compiled size limit for a pattern (bytes of the compiled program).
const PATTERN_SIZE_LIMIT: usize = 1 << 16;

/// Acks and answers buffered per query before more are dropped.
pub(crate) const ANSWER_BUFFER: usize = 4096;

/// One ack or answer to a query this node asked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum QueryAnswer {
    /// `from` received the query and is selected by its filters.
    Ack {
        /// The member.
        from: String,
    },
    /// `from`'s answer.
    Response {
        /// The member.
        from: String,
        /// What it answered.
        payload: Vec<u8>,
    },
}

/// The acks and answers to one query, as they arrive; ends at the query's
/// deadline.
#[derive(Debug)]
pub struct QueryStream {
    pub(crate) ltime: u64,
    pub(crate) timeout: Duration,
    pub(crate) rx: mpsc::Receiver<QueryAnswer>,
}

impl QueryStream {
    /// The next ack or answer; `None` once the query has ended.
    pub async fn next(&mut self) -> Option<QueryAnswer> {
        self.rx.recv().await
    }

    /// The query's Lamport time (its name, with the asker's).
    pub fn ltime(&self) -> u64 {
        self.ltime
    }

    /// How long the query lasts from when it was asked.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }
}

/// A query this node is selected for, to answer with
/// [`crate::Node::respond`] (at most once, before `timeout` has passed).
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct IncomingQuery {
    /// The query's name.
    pub name: String,
    /// Its payload.
    pub payload: Vec<u8>,
    /// The asking member.
    pub origin: Arc<str>,
    /// The asker's Lamport time for it.
    pub ltime: u64,
    /// How long the asker waits.
    pub timeout: Duration,
    /// When the local node received it (wall clock).
    pub at: std::time::SystemTime,
}

impl IncomingQuery {
    pub(crate) fn of(q: &Query, at: std::time::SystemTime) -> Self {
        IncomingQuery {
            name: q.name.clone(),
            payload: q.payload.clone(),
            origin: q.origin.clone(),
            ltime: q.ltime,
            timeout: Duration::from_millis(u64::from(q.timeout_ms)),
            at,
        }
    }
}

/// Compile `pattern` to match a whole name or value.
pub fn compile(pattern: &str) -> Result<Regex, regex::Error> {
    RegexBuilder::new(&format!("^(?:{pattern})$"))
        .size_limit(PATTERN_SIZE_LIMIT)
        .build()
}

/// Check that every pattern of `filters` compiles; the error names the
/// first that does not.
pub fn check_filters(filters: &[QueryFilter]) -> Result<(), String> {
    for f in filters {
        let p = match f {
            QueryFilter::Name(p) => p,
            QueryFilter::Tag { pattern, .. } => pattern,
        };
        if let Err(e) = compile(p) {
            let first = e.to_string();
            let first = first.lines().last().unwrap_or("").trim().to_string();
            return Err(format!("filter pattern {p:?} does not compile: {first}"));
        }
    }
    Ok(())
}

/// Whether a member called `name` with `tags` is selected by `filters`.
pub fn selected(filters: &[QueryFilter], name: &str, tags: &Tags) -> bool {
    filters.iter().all(|f| match f {
        QueryFilter::Name(p) => compile(p).is_ok_and(|re| re.is_match(name)),
        QueryFilter::Tag { key, pattern } => tags
            .get(key.as_str())
            .is_some_and(|v| compile(pattern).is_ok_and(|re| re.is_match(v))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_match_whole_names_and_tag_values() {
        let mut tags = Tags::new();
        tags.insert("role".into(), "web".into());
        let name = |p: &str| vec![QueryFilter::Name(p.into())];
        let tag = |k: &str, p: &str| {
            vec![QueryFilter::Tag {
                key: k.into(),
                pattern: p.into(),
            }]
        };
        assert!(selected(&[], "a", &tags));
        assert!(selected(&name("web-[0-9]+"), "web-12", &tags));
        assert!(!selected(&name("web"), "web-12", &tags), "anchored");
        assert!(selected(&tag("role", "web|db"), "x", &tags));
        assert!(!selected(&tag("role", "we"), "x", &tags));
        assert!(!selected(&tag("dc", ".*"), "x", &tags), "a missing tag");
        assert!(
            !selected(&name("("), "(", &tags),
            "a bad pattern selects nobody"
        );
        let both = [name("x").remove(0), tag("role", "web").remove(0)];
        assert!(selected(&both, "x", &tags));
        assert!(check_filters(&name("("))
            .unwrap_err()
            .contains("does not compile"));
        assert!(
            check_filters(&name("a{1000}{1000}")).is_err(),
            "over the size limit"
        );
    }
}
