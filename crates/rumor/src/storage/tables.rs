//! The three tables and the byte encoding of what is not already bytes.
//!
//! Every table maps bytes to bytes: redb's typed `&str` decodes with a
//! panic on invalid UTF-8, and a damaged file must give an error instead.

use redb::TableDefinition;

/// Key-space key (UTF-8) → the caller's encoding of the entry.
pub(crate) const KV: TableDefinition<&[u8], &[u8]> = TableDefinition::new("kv");
/// Per-node state key (UTF-8) → [`encode_state`].
pub(crate) const STATE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("state");
/// Counter name (UTF-8) → its value (see [`super::meta`]).
pub(crate) const META: TableDefinition<&[u8], &[u8]> = TableDefinition::new("meta");

/// A state row: the version (8 bytes, little-endian), then 0 for a deleted
/// value or 1 and the value's UTF-8.
pub(crate) fn encode_state(value: Option<&str>, version: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(9 + value.map_or(0, str::len));
    out.extend_from_slice(&version.to_le_bytes());
    match value {
        None => out.push(0),
        Some(v) => {
            out.push(1);
            out.extend_from_slice(v.as_bytes());
        }
    }
    out
}

/// The inverse of [`encode_state`]; `None` for a malformed row.
pub(crate) fn decode_state(row: &[u8]) -> Option<(Option<String>, u64)> {
    let (version, rest) = row.split_first_chunk::<8>()?;
    let version = u64::from_le_bytes(*version);
    match rest.split_first()? {
        (0, []) => Some((None, version)),
        (1, v) => Some((Some(String::from_utf8(v.to_vec()).ok()?), version)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_rows_round_trip_and_reject_damage() {
        for (v, n) in [(None, 0), (Some(""), 1), (Some("héllo"), u64::MAX)] {
            let row = encode_state(v, n);
            assert_eq!(decode_state(&row), Some((v.map(String::from), n)));
        }
        assert_eq!(decode_state(&[1, 2, 3]), None);
        assert_eq!(decode_state(&[0; 8]), None);
        assert_eq!(decode_state(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 9]), None);
        assert_eq!(decode_state(&[0, 0, 0, 0, 0, 0, 0, 0, 2]), None);
        assert_eq!(decode_state(&[0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff]), None);
    }
}
