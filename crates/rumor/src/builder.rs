//! [`Builder`]: configure a node, bind its sockets and start its task.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rumor_core::{Config, Membership, Profile, Tags};
use tokio::sync::mpsc;

use crate::driver::Driver;
use crate::encryption::EncryptionMode;
use crate::framing::Framer;
use crate::keyring::Keyring;
use crate::lazy_channel::LazyChannel;
use crate::metrics::Counters;
use crate::seeds::Seed;
use crate::storage::StorageOptions;
use crate::transport::admission::{Admission, DEFAULT_MAX_STREAMS_PER_SOURCE};
use crate::transport::sent::SentLog;
use crate::transport::tcp::{StreamCtx, DEFAULT_PREAUTH_BUDGET, MIN_PREAUTH_BUDGET};
use crate::transport::warn::WarnLimiter;
use crate::transport::{TokioNet, Transport};
use crate::{Error, Node};

/// Events [`Node::events`] receivers may fall behind by before losing some.
pub const EVENTS_CAPACITY: usize = 4096;

/// Caps on the transport's streams: set at start by the [`Builder`]
/// (`max_streams`, `max_streams_per_source`, `stream_preauth_budget`),
/// changed while running by [`Node::set_stream_limits`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StreamLimits {
    /// Most streams open at once in each direction (default 128, at least 1).
    pub max_streams: usize,
    /// Most incoming streams open at once from one source, an IPv4 address
    /// or an IPv6 /64 (default 16, at least 1).
    pub max_streams_per_source: usize,
    /// Most bytes read from a stream before its header is authenticated
    /// (default 64 KiB, at least 1 KiB).
    pub stream_preauth_budget: usize,
}

impl Default for StreamLimits {
    fn default() -> Self {
        StreamLimits {
            max_streams: 128,
            max_streams_per_source: DEFAULT_MAX_STREAMS_PER_SOURCE,
            stream_preauth_budget: DEFAULT_PREAUTH_BUDGET,
        }
    }
}

impl StreamLimits {
    /// These limits raised to their minimums.
    pub(crate) fn clamped(self) -> Self {
        StreamLimits {
            max_streams: self.max_streams.max(1),
            max_streams_per_source: self.max_streams_per_source.max(1),
            stream_preauth_budget: self.stream_preauth_budget.max(MIN_PREAUTH_BUDGET),
        }
    }
}

/// Configures and starts a [`Node`]; get one from [`Node::builder`].
#[derive(Clone, Debug)]
pub struct Builder {
    name: Option<String>,
    bind: SocketAddr,
    advertise: Option<SocketAddr>,
    seeds: Vec<Seed>,
    tags: Tags,
    config: Config,
    keyring: Option<Keyring>,
    encryption: EncryptionMode,
    label: String,
    rng_seed: Option<u64>,
    stream_timeout: Duration,
    streams: StreamLimits,
    join_timeout: Duration,
    metrics_interval: Option<Duration>,
    incarnation: Option<u64>,
    dns_servers: Vec<SocketAddr>,
    storage: Option<StorageOptions>,
    wall_offset_micros: i64,
}

impl Default for Builder {
    fn default() -> Self {
        Builder {
            name: None,
            bind: SocketAddr::from(([0, 0, 0, 0], 7946)),
            advertise: None,
            seeds: Vec::new(),
            tags: Tags::new(),
            config: Config::lan(),
            keyring: None,
            encryption: EncryptionMode::Enforce,
            label: String::new(),
            rng_seed: None,
            stream_timeout: Duration::from_secs(10),
            streams: StreamLimits::default(),
            join_timeout: Duration::from_secs(30),
            metrics_interval: Some(Duration::from_secs(1)),
            incarnation: None,
            dns_servers: Vec::new(),
            storage: None,
            wall_offset_micros: 0,
        }
    }
}

impl Builder {
    /// The node's name, unique in the cluster (default: its advertised address).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Address to bind the UDP socket and TCP listener to (default
    /// `0.0.0.0:7946`; port 0 lets the OS pick one port for both).
    pub fn bind(mut self, addr: SocketAddr) -> Self {
        self.bind = addr;
        self
    }

    /// Address the others reach this node at (default: the bound address,
    /// which must then not be unspecified). Port 0 means the bound port.
    pub fn advertise(mut self, addr: SocketAddr) -> Self {
        self.advertise = Some(addr);
        self
    }

    /// Add a seed to join through when starting.
    pub fn seed(mut self, seed: impl Into<Seed>) -> Self {
        self.seeds.push(seed.into());
        self
    }

    /// Add seeds to join through when starting.
    pub fn seeds<S: Into<Seed>>(mut self, seeds: impl IntoIterator<Item = S>) -> Self {
        self.seeds.extend(seeds.into_iter().map(Into::into));
        self
    }

    /// Set one tag.
    pub fn tag(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.tags.insert(key.into(), value.into());
        self
    }

    /// Replace all tags.
    pub fn tags(mut self, tags: Tags) -> Self {
        self.tags = tags;
        self
    }

    /// Use a profile's protocol configuration (default: LAN).
    pub fn profile(mut self, profile: Profile) -> Self {
        self.config = Config::profile(profile);
        self
    }

    /// Use a full protocol configuration. Its `packet_size` is the largest
    /// datagram on the wire; the envelope's overhead is taken off it.
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// Track every member (`Full`, the default) or a few neighbours
    /// (`Partial`: HyParView and Plumtree, for large clusters). Every node
    /// of a cluster must use the same.
    pub fn membership(mut self, membership: Membership) -> Self {
        self.config.membership = membership;
        self
    }

    /// Encrypt and authenticate everything with this keyring.
    pub fn keyring(mut self, keyring: Keyring) -> Self {
        self.keyring = Some(keyring);
        self
    }

    /// What a node with a keyring sends and accepts (default
    /// [`EncryptionMode::Enforce`]: encrypted only). `Send` and `Accept`
    /// are the transition modes that turn encryption on or off in a running
    /// cluster; change the mode later with [`Node::set_encryption`]. Any
    /// other mode than `Enforce` needs a [`Builder::keyring`].
    pub fn encryption(mut self, mode: EncryptionMode) -> Self {
        self.encryption = mode;
        self
    }

    /// A cluster label: packets carrying another label are refused.
    pub fn label(mut self, label: impl Into<String>) -> Self {
        self.label = label.into();
        self
    }

    /// Seed of the protocol's random generator (default: random).
    pub fn rng_seed(mut self, seed: u64) -> Self {
        self.rng_seed = Some(seed);
        self
    }

    /// Deadline of a whole stream exchange: connect, request, answer and
    /// reply (default 10 s). It is not renewed by each read, so a peer
    /// trickling bytes is cut off at it all the same.
    pub fn stream_timeout(mut self, timeout: Duration) -> Self {
        self.stream_timeout = timeout;
        self
    }

    /// Most streams open at once in each direction (default 128); an
    /// incoming connection over it is closed at once and counted.
    pub fn max_streams(mut self, n: usize) -> Self {
        self.streams.max_streams = n.max(1);
        self
    }

    /// Most incoming streams open at once from one source: an IPv4
    /// address or an IPv6 /64 (default 16). A connection over it is closed
    /// at once and counted, so one host cannot take every stream slot.
    pub fn max_streams_per_source(mut self, n: usize) -> Self {
        self.streams.max_streams_per_source = n.max(1);
        self
    }

    /// Most bytes read from a stream connection before its header has
    /// passed the label (and, encrypted, the key) check (default 64 KiB,
    /// at least 1 KiB). Real headers take under 300 bytes.
    pub fn stream_preauth_budget(mut self, bytes: usize) -> Self {
        self.streams.stream_preauth_budget = bytes.max(MIN_PREAUTH_BUDGET);
        self
    }

    /// How long [`Node::join`] retries before giving up (default 30 s).
    pub fn join_timeout(mut self, timeout: Duration) -> Self {
        self.join_timeout = timeout;
        self
    }

    /// Tests only: offset the system clock this node's key space reads by
    /// `micros` (a node whose clock is off).
    #[doc(hidden)]
    pub fn test_clock_offset_micros(mut self, micros: i64) -> Self {
        self.wall_offset_micros = micros;
        self
    }

    /// How often stats are exported to the `metrics` recorder (default
    /// every second; `None` never).
    pub fn metrics_interval(mut self, every: Option<Duration>) -> Self {
        self.metrics_interval = every;
        self
    }

    /// The incarnation this node had in a previous run (recorded in a
    /// snapshot, say): the node starts above it, so its first alive claim
    /// outranks whatever the cluster remembers of it (a suspicion or a
    /// death) without a refutation round trip. Default: start at the bottom.
    pub fn incarnation(mut self, previous: u64) -> Self {
        self.incarnation = Some(previous);
        self
    }

    /// Keep the key space, this node's own per-node state, its incarnation
    /// and its Lamport clock in a data dir, and resume from it at start:
    /// the node comes back with its keys (and reconciles only what changed
    /// while it was down), never reuses a state version or a Lamport time,
    /// and outranks the incarnation the cluster remembers. Key-space writes
    /// are acknowledged as [`StorageOptions::sync`] says. Default: none,
    /// everything in memory.
    pub fn storage(mut self, options: StorageOptions) -> Self {
        self.storage = Some(options);
        self
    }

    /// Name servers (address and port) to look SRV seeds up with, instead
    /// of those of the system's configuration (`/etc/resolv.conf`). Other
    /// seeds are unaffected.
    pub fn dns_servers(mut self, servers: impl IntoIterator<Item = SocketAddr>) -> Self {
        self.dns_servers = servers.into_iter().collect();
        self
    }

    /// Bind the sockets, start the node's task and, if seeds were given,
    /// join through them (failing if none answers within the join timeout).
    /// Must be called inside a tokio runtime.
    pub async fn start(self) -> Result<Node, Error> {
        self.start_on::<TokioNet>().await
    }

    /// [`Builder::start`] on another [`Transport`] than the operating
    /// system's sockets, a simulated network for instance.
    pub async fn start_on<T: Transport>(self) -> Result<Node, Error> {
        let framer = Framer::new(&self.label, self.keyring.clone())?;
        if self.keyring.is_none() && self.encryption != EncryptionMode::Enforce {
            return Err(Error::InvalidConfig(format!(
                "encryption mode {} needs a keyring",
                self.encryption
            )));
        }
        framer.encryption().set(self.encryption);
        let encryption = self.keyring.as_ref().map(|_| framer.encryption().clone());
        let mut config = self.config.clone();
        config.validate()?;
        config.packet_size = config
            .packet_size
            .checked_sub(framer.overhead())
            .filter(|&n| n >= 512)
            .ok_or_else(|| {
                Error::InvalidConfig(format!(
                    "packet_size ({}) leaves under 512 bytes after {} bytes of envelope",
                    config.packet_size,
                    framer.overhead()
                ))
            })?;
        let net = T::bind(self.bind).await.map_err(|source| Error::Bind {
            addr: self.bind,
            source,
        })?;
        let local_addr = net.local_addr().map_err(|source| Error::Bind {
            addr: self.bind,
            source,
        })?;
        let advertise = match self.advertise {
            Some(a) if a.port() == 0 => SocketAddr::new(a.ip(), local_addr.port()),
            Some(a) => a,
            None if local_addr.ip().is_unspecified() => {
                return Err(Error::InvalidConfig(format!(
                    "bound to {local_addr}: set an advertise address the others can reach"
                )))
            }
            None => local_addr,
        };
        let name = self.name.clone().unwrap_or_else(|| advertise.to_string());
        let rng_seed = match self.rng_seed {
            Some(s) => s,
            None => {
                let mut b = [0u8; 8];
                getrandom::fill(&mut b).map_err(|e| Error::Random(e.to_string()))?;
                u64::from_le_bytes(b)
            }
        };
        let max_message = config.max_stream_size;
        let mut core = rumor_core::Node::new(&name, advertise, config, rng_seed)?;
        if let Some(previous) = self.incarnation {
            core.resume_incarnation(previous);
        }
        let persist = match self.storage.clone() {
            Some(options) => Some(crate::persist::open(options, &mut core).await?),
            None => None,
        };
        if !self.tags.is_empty() {
            core.set_tags(rumor_core::Instant::ZERO, self.tags.clone())?;
        }
        let counters = Arc::new(Counters::default());
        let (cmd_tx, cmd_rx) = mpsc::channel(64);
        let events = Arc::new(LazyChannel::new(EVENTS_CAPACITY));
        let driver = Driver {
            core,
            name: name.clone(),
            net,
            ctx: Arc::new(StreamCtx {
                node: name.clone(),
                framer,
                counters: counters.clone(),
                timeout: self.stream_timeout,
                max_message,
                preauth_budget: self.streams.stream_preauth_budget.into(),
                admission: Admission::new(
                    self.streams.max_streams_per_source,
                    self.streams.max_streams,
                ),
                warn: WarnLimiter::default(),
            }),
            origin: tokio::time::Instant::now(),
            commands: cmd_rx,
            events: events.clone(),
            counters,
            max_streams: self.streams.max_streams,
            sent: SentLog::default(),
            metrics_interval: self.metrics_interval,
            persist,
            wall_offset_micros: self.wall_offset_micros,
        };
        let task = tokio::spawn(driver.run());
        let node = Node {
            name,
            advertise,
            local_addr,
            commands: cmd_tx,
            events,
            keyring: self.keyring,
            encryption,
            join_timeout: self.join_timeout,
            dns_servers: self.dns_servers,
            tuning: std::sync::Mutex::new((self.config, self.streams)),
            task: Some(task),
        };
        if !self.seeds.is_empty() {
            if let Err(e) = node.join(self.seeds).await {
                let _ = node.shutdown().await;
                return Err(e);
            }
        }
        Ok(node)
    }
}
