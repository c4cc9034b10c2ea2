//! Members: identity, liveness state and tags of one node as others see it.
//!
//! Identity rules:
//! - a member is known by its **name**; the name is unique in a cluster;
//! - its **address** may change only while it is dead or left (a restart at
//!   a new address); an alive claim of a live name from another address is a
//!   conflict and is ignored (counted in [`crate::Stats::address_conflicts`]);
//! - its **incarnation** only grows; a restarted node learns its old
//!   incarnation from the cluster (push-pull on join) and refutes with a
//!   higher one, so it comes back alive under a new incarnation.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

/// Per-member key/value metadata, carried in alive messages.
pub type Tags = BTreeMap<String, String>;

/// A socket address packed into 19 bytes (a `SocketAddr` takes 32), for
/// the member table: at 10,000 members per node and 10,000 nodes in a
/// simulation, every byte of a member counts. IPv6 flow info and scope id
/// are not kept (the wire does not carry them either).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct PackedAddr {
    ip: [u8; 16],
    port: [u8; 2],
    v6: bool,
}

impl From<SocketAddr> for PackedAddr {
    fn from(a: SocketAddr) -> Self {
        let (ip, v6) = match a.ip() {
            std::net::IpAddr::V4(v4) => {
                let mut ip = [0u8; 16];
                ip[..4].copy_from_slice(&v4.octets());
                (ip, false)
            }
            std::net::IpAddr::V6(v6) => (v6.octets(), true),
        };
        PackedAddr {
            ip,
            port: a.port().to_be_bytes(),
            v6,
        }
    }
}

impl PackedAddr {
    /// The address.
    pub(crate) fn get(self) -> SocketAddr {
        let ip = if self.v6 {
            std::net::IpAddr::V6(std::net::Ipv6Addr::from(self.ip))
        } else {
            std::net::IpAddr::V4(std::net::Ipv4Addr::new(
                self.ip[0], self.ip[1], self.ip[2], self.ip[3],
            ))
        };
        SocketAddr::new(ip, u16::from_be_bytes(self.port))
    }
}

/// One shared empty tag map, so members without tags cost no allocation.
pub fn no_tags() -> Arc<Tags> {
    static EMPTY: std::sync::OnceLock<Arc<Tags>> = std::sync::OnceLock::new();
    EMPTY.get_or_init(|| Arc::new(Tags::new())).clone()
}

/// The most bytes a member's tags may take encoded.
pub const MAX_TAGS_BYTES: usize = 512;

/// The longest member name, in bytes.
pub const MAX_NAME_LEN: usize = 128;

/// Liveness of a member, in precedence order for equal incarnations:
/// a later variant overrides an earlier one at the same incarnation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum MemberState {
    /// Answering probes.
    Alive,
    /// Missed a probe; declared dead unless it refutes in time.
    Suspect,
    /// Declared failed.
    Dead,
    /// Left the cluster gracefully.
    Left,
}

impl MemberState {
    /// The state's wire code (push-pull records, record digests).
    pub fn code(self) -> u8 {
        match self {
            MemberState::Alive => 0,
            MemberState::Suspect => 1,
            MemberState::Dead => 2,
            MemberState::Left => 3,
        }
    }

    /// The state of a wire code.
    pub fn from_code(code: u8) -> Option<Self> {
        match code {
            0 => Some(MemberState::Alive),
            1 => Some(MemberState::Suspect),
            2 => Some(MemberState::Dead),
            3 => Some(MemberState::Left),
            _ => None,
        }
    }

    /// Dead or left: no longer a member of the live cluster.
    pub fn is_gone(self) -> bool {
        matches!(self, MemberState::Dead | MemberState::Left)
    }

    /// The lowercase name used by the API and the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            MemberState::Alive => "alive",
            MemberState::Suspect => "suspect",
            MemberState::Dead => "dead",
            MemberState::Left => "left",
        }
    }
}

/// A snapshot of one member as the local node sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Member {
    /// Unique name in the cluster.
    pub name: Arc<str>,
    /// Address others dial (UDP and TCP).
    pub addr: SocketAddr,
    /// Version of this member's claims; only grows.
    pub incarnation: u64,
    /// Liveness.
    pub state: MemberState,
    /// Metadata.
    pub tags: Arc<Tags>,
    /// Protocol versions the member speaks, `(min, max)`.
    pub protocol: (u8, u8),
}

/// A 32-bit digest of one member record: its name, incarnation and state
/// (a tag or address change takes a new incarnation). Stable across builds
/// and machines: a [`crate::message::Message::Pull`] lists the puller's
/// digests so that the answer carries only the records it lacks or holds
/// in an older version.
pub fn record_digest(name: &str, incarnation: u64, state: MemberState) -> u32 {
    let mut h = crate::kv::hash::StableHasher::new();
    h.write_bytes(name.as_bytes());
    h.write_u64((incarnation << 8) | u64::from(state.code()));
    h.finish() as u32
}

/// Check a member name: non-empty, at most [`MAX_NAME_LEN`] bytes.
pub fn validate_name(name: &str) -> Result<(), crate::Error> {
    if name.is_empty() {
        return Err(crate::Error::InvalidName("name is empty".into()));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(crate::Error::InvalidName(format!(
            "name is {} bytes, the limit is {MAX_NAME_LEN}",
            name.len()
        )));
    }
    if name.chars().any(char::is_control) {
        return Err(crate::Error::InvalidName(format!(
            "name {name:?} contains a control character"
        )));
    }
    Ok(())
}
