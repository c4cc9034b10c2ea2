//! The causal context of a siblings-mode key as the HTTP API and the CLI
//! carry it: an opaque token a client reads with `GET /v1/kv/{key}` and
//! passes back with the write that resolves the siblings.
//!
//! Format: `counter.hexname` pairs joined by `-` (the empty string is the
//! empty context), e.g. `3.6e31-1.6e32` for `{n1: 3, n2: 1}`. Only
//! `[0-9a-f.-]` appear, so the token is safe in a header and a query
//! string without escaping. Clients should not build it themselves.

use rumor::VersionVector;
use rumor_core::kv::MAX_CONTEXT_LEN;

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// The token of `vv`.
pub fn encode(vv: &VersionVector) -> String {
    vv.iter()
        .map(|(node, counter)| format!("{counter}.{}", hex(node.as_bytes())))
        .collect::<Vec<_>>()
        .join("-")
}

/// Parse a token from [`encode`].
pub fn decode(token: &str) -> Result<VersionVector, String> {
    let mut vv = VersionVector::new();
    let token = token.trim();
    if token.is_empty() {
        return Ok(vv);
    }
    for (i, part) in token.split('-').enumerate() {
        if i >= MAX_CONTEXT_LEN {
            return Err(format!(
                "the context names more than {MAX_CONTEXT_LEN} nodes"
            ));
        }
        let bad = || format!("malformed context {token:?}: pass the context from GET unchanged");
        let (counter, name) = part.split_once('.').ok_or_else(bad)?;
        let counter: u64 = counter.parse().map_err(|_| bad())?;
        let name = unhex(name)
            .and_then(|b| String::from_utf8(b).ok())
            .filter(|n| !n.is_empty())
            .ok_or_else(bad)?;
        vv.observe(&name.into(), counter);
    }
    Ok(vv)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_garbage_is_refused() {
        let mut vv = VersionVector::new();
        vv.observe(&"node-1".into(), 3);
        vv.observe(&"nœud 2,=.-".into(), 17);
        let token = encode(&vv);
        assert!(token
            .chars()
            .all(|c| c.is_ascii_hexdigit() || c == '.' || c == '-'));
        assert_eq!(decode(&token), Ok(vv));
        assert_eq!(decode(""), Ok(VersionVector::new()));
        for bad in [
            "x", "3", "3.", "3.6", "a.6e31", "3.zz", "3.6e31-", "-1.6e31",
        ] {
            assert!(decode(bad).is_err(), "{bad:?} was accepted");
        }
    }
}
