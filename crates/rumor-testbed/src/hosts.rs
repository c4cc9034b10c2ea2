//! The hosts: H network namespaces on one private subnet, each with one TUN
//! device served by the [`Emulator`].
//!
//! Host `i` (0-based) is namespace `rtb{pid}-{run}-h{i+1}` with address
//! `network + i + 1` on its device `tb0`; its only routes are its subnet
//! (through the emulator) and its own loopback, so nothing in it can reach
//! an address outside the testbed. The owner's pid in every name keeps
//! testbeds that run at once apart, and lets a later run remove what a
//! killed one left ([`remove_stale`]). [`Hosts::create`] refuses to start
//! when an address of the subnet is in use on the machine, and removes
//! everything it made when it fails or is dropped.

use crate::emulator::{host_addr, Emulator};
use crate::link::{Link, Links};
use crate::netns::{self, Namespace};
use crate::tun;
use anyhow::{bail, Context, Result};
use std::net::Ipv4Addr;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

/// Every namespace the testbed makes starts with this, then its owner's pid.
pub const NS_PREFIX: &str = "rtb";
/// The TUN device's name inside each host.
pub const DEVICE: &str = "tb0";

/// A private IPv4 subnet, e.g. `10.201.0.0/24`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Subnet {
    /// The network address.
    pub network: Ipv4Addr,
    /// The prefix length.
    pub prefix: u8,
}

impl std::str::FromStr for Subnet {
    type Err = String;
    fn from_str(s: &str) -> Result<Subnet, String> {
        let (a, p) = s
            .split_once('/')
            .ok_or_else(|| format!("subnet {s:?}: expected A.B.C.D/P"))?;
        let addr: Ipv4Addr = a
            .parse()
            .map_err(|_| format!("subnet {s:?}: bad address"))?;
        let prefix: u8 = p
            .parse()
            .ok()
            .filter(|p| (8..=30).contains(p))
            .ok_or_else(|| format!("subnet {s:?}: prefix must be 8..=30"))?;
        if !addr.is_private() {
            return Err(format!(
                "subnet {s:?}: use a private range (10/8, 172.16/12, 192.168/16); it exists only inside the namespaces"
            ));
        }
        let mask = u32::MAX << (32 - prefix);
        Ok(Subnet {
            network: Ipv4Addr::from(u32::from(addr) & mask),
            prefix,
        })
    }
}

impl std::fmt::Display for Subnet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

impl Subnet {
    /// How many hosts fit (network and broadcast addresses excluded).
    pub fn capacity(&self) -> usize {
        (1usize << (32 - self.prefix)) - 2
    }

    /// Whether `a` is inside.
    pub fn contains(&self, a: Ipv4Addr) -> bool {
        let mask = u32::MAX << (32 - self.prefix);
        u32::from(a) & mask == u32::from(self.network)
    }
}

/// The testbed's hosts and the emulator joining them.
pub struct Hosts {
    /// The emulator (dropped, and so stopped, before the namespaces).
    pub emulator: Emulator,
    namespaces: Vec<Namespace>,
    subnet: Subnet,
}

/// Checks what the testbed needs before it touches anything: root, `ip`,
/// `/dev/net/tun`, a subnet large enough and free; removes what dead runs
/// left behind.
pub fn preflight(hosts: usize, subnet: Subnet) -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("the testbed needs root (network namespaces and TUN devices); run it with sudo");
    }
    if Command::new("ip").arg("-V").output().is_err() {
        bail!("`ip` (iproute2) is missing; install it (apt-get install iproute2)");
    }
    if !std::path::Path::new("/dev/net/tun").exists() {
        bail!("/dev/net/tun is missing; the testbed needs TUN devices (modprobe tun)");
    }
    if hosts < 2 {
        bail!("--hosts {hosts}: the testbed needs at least 2 hosts");
    }
    if hosts > subnet.capacity() {
        bail!(
            "--hosts {hosts} does not fit in {subnet} ({} addresses); use a shorter prefix with --subnet",
            subnet.capacity()
        );
    }
    let stale = remove_stale()?;
    if stale > 0 {
        eprintln!("rumor-testbed: removed {stale} namespaces left by a testbed that is gone");
    }
    let out = Command::new("ip")
        .args(["-o", "-4", "addr", "show"])
        .output()
        .context("run `ip -o -4 addr show`")?;
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let used = line
            .split_whitespace()
            .skip_while(|w| *w != "inet")
            .nth(1)
            .and_then(|a| a.split('/').next())
            .and_then(|a| a.parse::<Ipv4Addr>().ok());
        if let Some(a) = used.filter(|a| subnet.contains(*a)) {
            bail!("subnet {subnet} is already in use on this machine ({a}); pick another with --subnet");
        }
    }
    Ok(())
}

impl Hosts {
    /// Makes `n` hosts on `subnet`, every link set to `base`, the emulator
    /// seeded with `seed`.
    pub fn create(n: usize, subnet: Subnet, base: Link, seed: u64) -> Result<Hosts> {
        preflight(n, subnet)?;
        let mut namespaces = Vec::with_capacity(n);
        let mut devices = Vec::with_capacity(n);
        let run = run_tag();
        for i in 0..n {
            let ns = Namespace::create(&format!("{run}-h{}", i + 1))?;
            let device = ns.run_in(|| tun::open(DEVICE))??;
            let addr = format!("{}/{}", host_addr(subnet.network, i), subnet.prefix);
            ns.ip(&["addr", "add", &addr, "dev", DEVICE])?;
            ns.ip(&["link", "set", DEVICE, "up"])?;
            namespaces.push(ns);
            devices.push(device);
        }
        let emulator = Emulator::start(devices, subnet.network, Links::new(n, base), seed);
        Ok(Hosts {
            emulator,
            namespaces,
            subnet,
        })
    }

    /// How many hosts.
    pub fn len(&self) -> usize {
        self.namespaces.len()
    }

    /// Whether there are none (never, once created).
    pub fn is_empty(&self) -> bool {
        self.namespaces.is_empty()
    }

    /// Host `i`'s namespace.
    pub fn ns(&self, i: usize) -> &Namespace {
        &self.namespaces[i]
    }

    /// Host `i`'s address.
    pub fn addr(&self, i: usize) -> Ipv4Addr {
        host_addr(self.subnet.network, i)
    }
}

/// A prefix for the namespaces of one run, unique on the machine while
/// this process lives: `rtb{pid}-{n}`, `n` counting the runs of this
/// process.
pub fn run_tag() -> String {
    static RUNS: AtomicU32 = AtomicU32::new(0);
    let n = RUNS.fetch_add(1, Ordering::Relaxed);
    format!("{NS_PREFIX}{}-{n}", std::process::id())
}

/// The pid of the process that made the namespace `name`, if `name` is one
/// of ours; `Some(None)` for a name of ours without one (older runs).
fn owner(name: &str) -> Option<Option<i32>> {
    let rest = name.strip_prefix(NS_PREFIX)?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    if digits.is_empty() {
        return rest.starts_with("-h").then_some(None);
    }
    rest[digits.len()..]
        .starts_with('-')
        .then(|| digits.parse().ok())
}

fn alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    let found = unsafe { libc::kill(pid, 0) } == 0;
    found || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// Our namespaces whose owner is running (`owner_running`) or gone.
fn ours(owner_running: bool) -> Result<Vec<String>> {
    Ok(netns::existing()?
        .into_iter()
        .filter(|n| owner(n).is_some_and(|pid| pid.is_some_and(alive) == owner_running))
        .collect())
}

/// Removes every namespace of ours whose owner is no longer running (what a
/// killed run left), killing any agent still inside. Returns how many.
pub fn remove_stale() -> Result<usize> {
    let stale = ours(false)?;
    for n in &stale {
        netns::kill_all_in(n);
        netns::ip(&["netns", "del", n])?;
    }
    Ok(stale.len())
}

/// The namespaces of testbeds that are running now (not removed by
/// [`remove_stale`]).
pub fn running() -> Result<Vec<String>> {
    ours(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_their_owner() {
        assert_eq!(owner("rtb123-0-h4"), Some(Some(123)));
        assert_eq!(owner("rtb-h4"), Some(None));
        assert_eq!(owner("rtb123x"), None);
        assert_eq!(owner("other"), None);
        assert_eq!(owner("rtbx-h1"), None);
        let tag = run_tag();
        assert_eq!(
            owner(&format!("{tag}-h1")),
            Some(Some(std::process::id() as i32))
        );
        assert_ne!(run_tag(), tag, "two runs of one process share a prefix");
    }
}
