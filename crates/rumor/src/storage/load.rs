//! Reading everything back at start.

use super::meta::Meta;
use super::tables::{decode_state, KV, META, STATE};
use redb::{ReadableDatabase, ReadableTable, ReadableTableMetadata};

/// What a data directory holds, as read by [`Store::open`](super::Store::open).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Loaded {
    /// Every key-space entry, in key order.
    pub kv: Vec<(String, Vec<u8>)>,
    /// This node's per-node state: key, value (`None`: deleted), version,
    /// in key order.
    pub state: Vec<(String, Option<String>, u64)>,
    /// The counters ([`Meta::default`] in a new directory).
    pub meta: Meta,
    /// Whether the directory was new (nothing was stored before).
    pub created: bool,
}

/// Why a load failed: the engine, or a row this build cannot decode.
pub(crate) enum LoadError {
    Engine(redb::Error),
    Row(String),
}

impl From<redb::Error> for LoadError {
    fn from(e: redb::Error) -> Self {
        LoadError::Engine(e)
    }
}

fn engine<E: Into<redb::Error>>(e: E) -> LoadError {
    LoadError::Engine(e.into())
}

fn utf8(table: &str, key: &[u8]) -> Result<String, LoadError> {
    String::from_utf8(key.to_vec())
        .map_err(|_| LoadError::Row(format!("a key of table {table} is not UTF-8")))
}

/// Reads all three tables (which must exist).
pub(crate) fn load(db: &redb::Database) -> Result<Loaded, LoadError> {
    let tx = db.begin_read().map_err(engine)?;
    let mut out = Loaded::default();
    let kv = tx.open_table(KV).map_err(engine)?;
    out.kv
        .reserve(usize::try_from(kv.len().map_err(engine)?).unwrap_or(0));
    for row in kv.iter().map_err(engine)? {
        let (k, v) = row.map_err(engine)?;
        out.kv.push((utf8("kv", k.value())?, v.value().to_vec()));
    }
    for row in tx
        .open_table(STATE)
        .map_err(engine)?
        .iter()
        .map_err(engine)?
    {
        let (k, v) = row.map_err(engine)?;
        let key = utf8("state", k.value())?;
        let (value, version) = decode_state(v.value())
            .ok_or_else(|| LoadError::Row(format!("state row {key:?} is malformed")))?;
        out.state.push((key, value, version));
    }
    for row in tx
        .open_table(META)
        .map_err(engine)?
        .iter()
        .map_err(engine)?
    {
        let (k, v) = row.map_err(engine)?;
        out.meta
            .set_row(k.value(), v.value())
            .map_err(LoadError::Row)?;
    }
    Ok(out)
}
