//! The node's counters: what must never go backwards across a restart.

/// The newest on-disk format this build reads and writes.
pub const FORMAT_VERSION: u64 = 1;

/// The node's identity and counters, stored in the `meta` table.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Meta {
    /// The node's name (empty in a new data dir).
    pub node_name: String,
    /// The node's incarnation (generation) when last written.
    pub incarnation: u64,
    /// The greatest version of this node's per-node state.
    pub state_version: u64,
    /// The user-event Lamport time.
    pub event_ltime: u64,
    /// The query Lamport time.
    pub query_ltime: u64,
    /// The format version of the file ([`FORMAT_VERSION`] once written by
    /// this build; ignored in a [`Batch`](super::Batch), which always
    /// writes the current one).
    pub format_version: u64,
}

impl Default for Meta {
    fn default() -> Self {
        Meta {
            node_name: String::new(),
            incarnation: 0,
            state_version: 0,
            event_ltime: 0,
            query_ltime: 0,
            format_version: FORMAT_VERSION,
        }
    }
}

/// The row keys of the `meta` table.
pub(crate) mod keys {
    pub const NODE_NAME: &str = "node_name";
    pub const INCARNATION: &str = "incarnation";
    pub const STATE_VERSION: &str = "state_version";
    pub const EVENT_LTIME: &str = "event_ltime";
    pub const QUERY_LTIME: &str = "query_ltime";
    pub const FORMAT_VERSION: &str = "format_version";
}

impl Meta {
    /// The rows this meta is stored as.
    pub(crate) fn rows(&self) -> [(&'static str, Vec<u8>); 6] {
        [
            (keys::NODE_NAME, self.node_name.as_bytes().to_vec()),
            (keys::INCARNATION, self.incarnation.to_le_bytes().to_vec()),
            (
                keys::STATE_VERSION,
                self.state_version.to_le_bytes().to_vec(),
            ),
            (keys::EVENT_LTIME, self.event_ltime.to_le_bytes().to_vec()),
            (keys::QUERY_LTIME, self.query_ltime.to_le_bytes().to_vec()),
            (keys::FORMAT_VERSION, FORMAT_VERSION.to_le_bytes().to_vec()),
        ]
    }

    /// Sets the field a stored row holds; unknown rows (from a newer
    /// build) are skipped. `Err` names a malformed row.
    pub(crate) fn set_row(&mut self, key: &[u8], value: &[u8]) -> Result<(), String> {
        let num = || -> Result<u64, String> {
            let b: [u8; 8] = value.try_into().map_err(|_| {
                format!(
                    "meta row {} is {} bytes, not 8",
                    String::from_utf8_lossy(key),
                    value.len()
                )
            })?;
            Ok(u64::from_le_bytes(b))
        };
        match std::str::from_utf8(key).unwrap_or("") {
            keys::NODE_NAME => {
                self.node_name = String::from_utf8(value.to_vec())
                    .map_err(|_| "meta row node_name is not UTF-8".to_string())?
            }
            keys::INCARNATION => self.incarnation = num()?,
            keys::STATE_VERSION => self.state_version = num()?,
            keys::EVENT_LTIME => self.event_ltime = num()?,
            keys::QUERY_LTIME => self.query_ltime = num()?,
            keys::FORMAT_VERSION => self.format_version = num()?,
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_round_trip_and_bad_rows_are_errors() {
        let m = Meta {
            node_name: "n1".into(),
            incarnation: 7,
            state_version: 9,
            event_ltime: 11,
            query_ltime: 13,
            format_version: 0,
        };
        let mut back = Meta::default();
        for (k, v) in m.rows() {
            back.set_row(k.as_bytes(), &v).unwrap();
        }
        assert_eq!(
            back,
            Meta {
                format_version: FORMAT_VERSION,
                ..m
            }
        );
        assert!(back.set_row(b"incarnation", b"123").is_err());
        assert!(back.set_row(b"node_name", &[0xff]).is_err());
        assert!(back.set_row(b"from_the_future", b"x").is_ok());
    }
}
