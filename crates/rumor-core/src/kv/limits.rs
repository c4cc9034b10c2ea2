//! Size limits on keys and entries, and the checks applied to every entry,
//! local or remote, before it is stored.
//!
//! | what                          | limit                |
//! |-------------------------------|----------------------|
//! | key                           | 1..=[`MAX_KEY_LEN`] bytes of UTF-8 |
//! | value (each sibling)          | [`MAX_VALUE_LEN`] bytes |
//! | writer / context node names   | 1..=[`MAX_NAME_LEN`] bytes |
//! | siblings per key              | [`MAX_SIBLINGS`]     |
//! | nodes in a causal context     | [`MAX_CONTEXT_LEN`]  |

use std::fmt;

pub use crate::member::MAX_NAME_LEN;

use super::entry::{Entry, Mode};

/// Longest key, in bytes.
pub const MAX_KEY_LEN: usize = 256;
/// Largest value, in bytes (64 KiB).
pub const MAX_VALUE_LEN: usize = 64 * 1024;
/// Most siblings one key may hold.
pub const MAX_SIBLINGS: usize = 16;
/// Most nodes one causal context may name.
pub const MAX_CONTEXT_LEN: usize = 1024;

/// Why an entry (or a write) was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Invalid {
    /// The key is empty.
    KeyEmpty,
    /// The key is longer than [`MAX_KEY_LEN`].
    KeyTooLong(usize),
    /// The key is not UTF-8.
    KeyNotUtf8,
    /// A value is larger than [`MAX_VALUE_LEN`].
    ValueTooLarge(usize),
    /// A writer or context node name is empty or longer than [`MAX_NAME_LEN`].
    BadNodeName,
    /// More than [`MAX_SIBLINGS`] siblings (in the entry, or after merging).
    TooManySiblings(usize),
    /// A causal context names more than [`MAX_CONTEXT_LEN`] nodes.
    ContextTooLarge(usize),
    /// A sibling set with no siblings, or a sibling outside its context.
    MalformedSiblings,
    /// The entry's mode is not the mode configured for its key.
    ModeMismatch {
        /// The mode configured for the key.
        expected: Mode,
    },
    /// A timestamp is further ahead of the local clock than allowed.
    FromTheFuture {
        /// By how much, in microseconds.
        ahead_micros: u64,
    },
    /// The key space holds as much as its quota allows on this node.
    SpaceFull {
        /// `limits.max_kv_keys`.
        keys: usize,
        /// `limits.max_kv_bytes`.
        bytes: usize,
    },
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Invalid::KeyEmpty => write!(f, "empty key"),
            Invalid::KeyTooLong(n) => write!(f, "key is {n} bytes, the limit is {MAX_KEY_LEN}"),
            Invalid::KeyNotUtf8 => write!(f, "key is not UTF-8"),
            Invalid::ValueTooLarge(n) => {
                write!(f, "value is {n} bytes, the limit is {MAX_VALUE_LEN}")
            }
            Invalid::BadNodeName => write!(f, "node name empty or over {MAX_NAME_LEN} bytes"),
            Invalid::TooManySiblings(n) => {
                write!(f, "{n} siblings, the limit is {MAX_SIBLINGS}")
            }
            Invalid::ContextTooLarge(n) => {
                write!(f, "context names {n} nodes, the limit is {MAX_CONTEXT_LEN}")
            }
            Invalid::MalformedSiblings => write!(f, "malformed sibling set"),
            Invalid::ModeMismatch { expected } => write!(f, "key is in {expected:?} mode"),
            Invalid::FromTheFuture { ahead_micros } => {
                write!(f, "timestamp {ahead_micros} us ahead of the local clock")
            }
            Invalid::SpaceFull { keys, bytes } => write!(
                f,
                "the key space is full: at most {keys} keys and {bytes} bytes (limits.max_kv_keys, limits.max_kv_bytes)"
            ),
        }
    }
}

/// Check a key against the limits.
pub fn check_key(key: &str) -> Result<(), Invalid> {
    if key.is_empty() {
        return Err(Invalid::KeyEmpty);
    }
    if key.len() > MAX_KEY_LEN {
        return Err(Invalid::KeyTooLong(key.len()));
    }
    Ok(())
}

/// Check raw key bytes: UTF-8, then [`check_key`].
pub fn check_key_bytes(key: &[u8]) -> Result<&str, Invalid> {
    let key = std::str::from_utf8(key).map_err(|_| Invalid::KeyNotUtf8)?;
    check_key(key)?;
    Ok(key)
}

fn check_name(name: &str) -> Result<(), Invalid> {
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return Err(Invalid::BadNodeName);
    }
    Ok(())
}

fn check_value(value: &Option<Vec<u8>>) -> Result<(), Invalid> {
    match value {
        Some(v) if v.len() > MAX_VALUE_LEN => Err(Invalid::ValueTooLarge(v.len())),
        _ => Ok(()),
    }
}

/// Check an entry's sizes, names and shape (not its mode or timestamps).
pub fn check_entry(entry: &Entry) -> Result<(), Invalid> {
    match entry {
        Entry::Lww(e) => {
            check_name(&e.ts.node)?;
            check_value(&e.value)
        }
        Entry::Siblings(s) => {
            if s.len() > MAX_SIBLINGS {
                return Err(Invalid::TooManySiblings(s.len()));
            }
            if s.context().len() > MAX_CONTEXT_LEN {
                return Err(Invalid::ContextTooLarge(s.context().len()));
            }
            if s.is_empty() || !s.is_well_formed() {
                return Err(Invalid::MalformedSiblings);
            }
            for (n, _) in s.context().iter() {
                check_name(n)?;
            }
            for (_, sib) in s.siblings() {
                check_name(&sib.ts.node)?;
                check_value(&sib.value)?;
            }
            Ok(())
        }
    }
}
