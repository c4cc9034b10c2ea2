//! Seeds: the addresses a node joins through, given as socket addresses or
//! as DNS names (`host:port`, resolved to every A and AAAA record).

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

/// How long one DNS lookup may take.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

/// One seed: an address, or a `host:port` resolved when joining.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Seed {
    /// A socket address.
    Addr(SocketAddr),
    /// A DNS name and port, `host:port`.
    Host(String),
}

impl From<SocketAddr> for Seed {
    fn from(a: SocketAddr) -> Self {
        Seed::Addr(a)
    }
}

impl From<&str> for Seed {
    fn from(s: &str) -> Self {
        match s.parse() {
            Ok(a) => Seed::Addr(a),
            Err(_) => Seed::Host(s.to_string()),
        }
    }
}

impl From<String> for Seed {
    fn from(s: String) -> Self {
        Seed::from(s.as_str())
    }
}

impl From<&String> for Seed {
    fn from(s: &String) -> Self {
        Seed::from(s.as_str())
    }
}

impl fmt::Display for Seed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Seed::Addr(a) => a.fmt(f),
            Seed::Host(h) => f.write_str(h),
        }
    }
}

/// Resolve `seeds` to addresses (deduplicated, in order); the second value
/// describes the seeds that could not be resolved.
pub async fn resolve(seeds: &[Seed]) -> (Vec<SocketAddr>, Vec<String>) {
    let mut addrs = Vec::new();
    let mut errors = Vec::new();
    for seed in seeds {
        match seed {
            Seed::Addr(a) => addrs.push(*a),
            Seed::Host(h) => {
                match tokio::time::timeout(LOOKUP_TIMEOUT, tokio::net::lookup_host(h.as_str()))
                    .await
                {
                    Ok(Ok(found)) => {
                        let before = addrs.len();
                        addrs.extend(found);
                        if addrs.len() == before {
                            errors.push(format!("{h}: no addresses"));
                        }
                    }
                    Ok(Err(e)) => errors.push(format!("{h}: {e}")),
                    Err(_) => errors.push(format!("{h}: lookup timed out")),
                }
            }
        }
    }
    let mut seen = std::collections::HashSet::new();
    addrs.retain(|a| seen.insert(*a));
    (addrs, errors)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn resolves_addresses_and_names() {
        let seeds = [
            Seed::from("127.0.0.1:7000"),
            Seed::from("localhost:7001"),
            Seed::from("127.0.0.1:7000"),
            Seed::from("no-such-host.invalid:1"),
            Seed::from("missing-port"),
        ];
        assert_eq!(seeds[0], Seed::Addr("127.0.0.1:7000".parse().unwrap()));
        assert_eq!(seeds[1], Seed::Host("localhost:7001".into()));
        let (addrs, errors) = resolve(&seeds).await;
        assert_eq!(addrs[0], "127.0.0.1:7000".parse().unwrap());
        assert!(addrs
            .iter()
            .any(|a| a.port() == 7001 && a.ip().is_loopback()));
        assert_eq!(addrs.iter().filter(|a| a.port() == 7000).count(), 1);
        assert_eq!(errors.len(), 2, "{errors:?}");
    }
}
