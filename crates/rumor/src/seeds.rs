//! Seeds: the addresses a node joins through, given as socket addresses,
//! as DNS names (`host:port`, resolved to every A and AAAA record by the
//! system resolver), or as DNS SRV names (`srv:_gossip._udp.example.com`,
//! resolved to every target and port the SRV records list, the way a
//! Kubernetes headless service or Consul publishes its members).
//!
//! SRV names are looked up with [`hickory_resolver`], through the name
//! servers of the system configuration (`/etc/resolv.conf`) or those given
//! to [`Builder::dns_servers`](crate::Builder::dns_servers). A lookup that
//! fails is retried with the rest of the join (see [`crate::Node::join`]).

use std::cmp::Reverse;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::{RData, Record};
use hickory_resolver::TokioResolver;

/// How long one DNS lookup may take.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

/// Prefix marking an SRV seed.
pub const SRV_PREFIX: &str = "srv:";

/// One seed: an address, a `host:port` or an SRV name, resolved when joining.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Seed {
    /// A socket address.
    Addr(SocketAddr),
    /// A DNS name and port, `host:port`.
    Host(String),
    /// A DNS name whose SRV records list the seeds (targets and ports),
    /// e.g. `_gossip._udp.rumor.default.svc.cluster.local`. Parsed from
    /// `srv:NAME`, or from a bare name starting with `_` (SRV names do, host
    /// names may not).
    Srv(String),
}

impl From<SocketAddr> for Seed {
    fn from(a: SocketAddr) -> Self {
        Seed::Addr(a)
    }
}

impl From<&str> for Seed {
    fn from(s: &str) -> Self {
        if let Some(name) = s.strip_prefix(SRV_PREFIX) {
            return Seed::Srv(name.to_string());
        }
        match s.parse() {
            Ok(a) => Seed::Addr(a),
            Err(_) if s.starts_with('_') && !s.contains(':') => Seed::Srv(s.to_string()),
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
            Seed::Srv(n) => write!(f, "{SRV_PREFIX}{n}"),
        }
    }
}

/// Resolve `seeds` to addresses (deduplicated, in order) with the system's
/// DNS configuration; the second value describes the seeds that could not
/// be resolved.
pub async fn resolve(seeds: &[Seed]) -> (Vec<SocketAddr>, Vec<String>) {
    resolve_with(seeds, &[]).await
}

/// [`resolve`], looking SRV seeds up through `dns_servers` (their ports
/// included) instead of the system's name servers when it is not empty.
pub async fn resolve_with(
    seeds: &[Seed],
    dns_servers: &[SocketAddr],
) -> (Vec<SocketAddr>, Vec<String>) {
    let mut addrs = Vec::new();
    let mut errors = Vec::new();
    let mut resolver = None;
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
            Seed::Srv(name) => {
                if resolver.is_none() {
                    match dns_resolver(dns_servers) {
                        Ok(r) => resolver = Some(r),
                        Err(e) => {
                            errors.push(format!("{seed}: {e}"));
                            continue;
                        }
                    }
                }
                let Some(r) = &resolver else { continue };
                match tokio::time::timeout(LOOKUP_TIMEOUT, lookup_srv(r, name)).await {
                    Ok(Ok(found)) if found.is_empty() => {
                        errors.push(format!("{seed}: no addresses"))
                    }
                    Ok(Ok(found)) => addrs.extend(found),
                    Ok(Err(e)) => errors.push(format!("{seed}: {e}")),
                    Err(_) => errors.push(format!("{seed}: lookup timed out")),
                }
            }
        }
    }
    let mut seen = std::collections::HashSet::new();
    addrs.retain(|a| seen.insert(*a));
    (addrs, errors)
}

/// A resolver over `servers`, or over the system's configuration if empty.
fn dns_resolver(servers: &[SocketAddr]) -> Result<TokioResolver, String> {
    let mut builder = if servers.is_empty() {
        TokioResolver::builder_tokio()
            .map_err(|e| format!("cannot read the system's DNS configuration: {e}"))?
    } else {
        let name_servers = servers
            .iter()
            .map(|s| {
                let mut udp = ConnectionConfig::udp();
                udp.port = s.port();
                let mut tcp = ConnectionConfig::tcp();
                tcp.port = s.port();
                NameServerConfig::new(s.ip(), true, vec![udp, tcp])
            })
            .collect();
        TokioResolver::builder_with_config(
            ResolverConfig::from_name_servers(name_servers),
            TokioRuntimeProvider::default(),
        )
    };
    // Each join attempt builds a resolver afresh, so answers are never
    // older than the attempt; keep each query short, the join retries.
    let opts = builder.options_mut();
    opts.timeout = Duration::from_secs(2);
    opts.attempts = 1;
    builder.build().map_err(|e| e.to_string())
}

/// The addresses an SRV name lists: for each target (lowest priority
/// first, heavier weight first within a priority), its addresses with the
/// record's port. Target addresses come from the answer's additional
/// section when the server sent them, from an A/AAAA lookup otherwise.
async fn lookup_srv(resolver: &TokioResolver, name: &str) -> Result<Vec<SocketAddr>, String> {
    let lookup = resolver.srv_lookup(name).await.map_err(|e| e.to_string())?;
    let mut targets: Vec<_> = lookup
        .answers()
        .iter()
        .filter_map(|r| match &r.data {
            RData::SRV(srv) => Some(srv.clone()),
            _ => None,
        })
        // A target of "." means the service is not available there (RFC 2782).
        .filter(|srv| !srv.target.is_root())
        .collect();
    targets.sort_by_key(|srv| (srv.priority, Reverse(srv.weight)));
    let mut out = Vec::new();
    let mut problems = Vec::new();
    for srv in &targets {
        let mut ips = glue(lookup.additionals(), &srv.target);
        if ips.is_empty() {
            match resolver.lookup_ip(srv.target.clone()).await {
                Ok(found) => ips.extend(found.iter()),
                Err(e) => problems.push(format!("{}: {e}", srv.target)),
            }
        }
        out.extend(ips.into_iter().map(|ip| SocketAddr::new(ip, srv.port)));
    }
    if out.is_empty() && !problems.is_empty() {
        return Err(problems.join("; "));
    }
    Ok(out)
}

/// The A and AAAA records for `target` among `records`.
fn glue(records: &[Record], target: &hickory_resolver::proto::rr::Name) -> Vec<IpAddr> {
    records
        .iter()
        .filter(|r| r.name == *target)
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            RData::AAAA(a) => Some(IpAddr::V6(a.0)),
            _ => None,
        })
        .collect()
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

    #[test]
    fn srv_seed_syntax() {
        let k8s = "_gossip._udp.rumor.default.svc.cluster.local";
        assert_eq!(Seed::from(format!("srv:{k8s}")), Seed::Srv(k8s.into()));
        assert_eq!(Seed::from(k8s), Seed::Srv(k8s.into()));
        assert_eq!(
            Seed::from("srv:seeds.example.").to_string(),
            "srv:seeds.example."
        );
        assert_eq!(
            Seed::from("seeds.example:7946"),
            Seed::Host("seeds.example:7946".into())
        );
    }
}
