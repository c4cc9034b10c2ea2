//! Turn the library's join failure into advice for the operator: when a
//! seed accepted the connection but did not authenticate it (or its reply
//! did not authenticate here), the error says to check `--keyring` and
//! `--label`.
//!
//! What the joining side can tell: a seed with another key or label closes
//! the TCP connection of the join without a reply (it logs the refusal at
//! WARN with this agent's address); a seed that runs nothing on the port
//! refuses the connection, and one that is down or firewalled lets it time
//! out. The first is reported as "answered but could not be
//! authenticated"; a seed over its stream limits closes connections the
//! same way, so that case carries the same hint. UDP alone (no connection)
//! would be silence, indistinguishable from a dead seed.

/// The hint added to a join error when a seed could not authenticate us.
pub const AUTH_HINT: &str =
    "seed answered but could not be authenticated: check --keyring / --label";

/// `msg` (a join error), with [`AUTH_HINT`] in front when it applies.
pub fn explain(msg: &str) -> String {
    if msg.contains("could not be authenticated") {
        format!("{AUTH_HINT} ({msg})")
    } else {
        msg.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hint_only_when_a_seed_refused_us() {
        let e = explain("1 seed address(es) answered but could not be authenticated (...)");
        assert!(e.starts_with(AUTH_HINT), "{e}");
        assert_eq!(
            explain("1 seed address(es) did not answer"),
            "1 seed address(es) did not answer"
        );
    }
}
