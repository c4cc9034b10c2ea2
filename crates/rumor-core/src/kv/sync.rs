//! Merkle reconciliation as a sans-IO request/response exchange.
//!
//! The initiator A runs a [`MerkleSync`]; the responder B answers each
//! request with [`KvStore::respond`], which reads B's store and keeps no
//! session state. The node carries each [`SyncRequest`] and
//! [`SyncResponse`] in a message.
//!
//! 1. A sends its depth and root. B answers [`SyncResponse::InSync`] if the
//!    roots match (one round trip, done), else the hashes of its root's
//!    children.
//! 2. A compares child hashes with its own and asks for the children of the
//!    differing nodes only, one level per round trip, down to the leaves.
//! 3. For the differing leaves (buckets), A sends its `(key hash, entry
//!    digest)` items; B answers with its records A lacks or holds
//!    differently, and the key hashes of A's items B lacks or holds
//!    differently.
//!
//! [`MerkleSync::finish`] then yields the records received (apply them with
//! [`KvStore::apply_remote`]) and A's records to send to B (which applies
//! them likewise); merges are idempotent, so records both sides changed
//! simply cross. A single differing key costs `depth + 1` round trips (the
//! root's answer already carries level 1), plus the one-way push.
//! Requests hold at most `batch` nodes or buckets; wider differences take
//! more round trips, not bigger messages.

use std::collections::{BTreeSet, HashSet, VecDeque};

use super::entry::Record;
use super::merkle::FANOUT;
use super::store::KvStore;

/// Most nodes or buckets a responder accepts in one request.
pub const MAX_SYNC_BATCH: usize = 4096;
/// Most `(key hash, digest)` items a responder accepts in one request.
pub const MAX_SYNC_ITEMS: usize = 1 << 16;
/// Default nodes or buckets per request.
pub const DEFAULT_BATCH: usize = 256;

/// A step of the exchange, initiator to responder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SyncRequest {
    /// Open: the initiator's tree depth and root hash.
    Root {
        /// Merkle depth; must match the responder's.
        depth: u8,
        /// The initiator's root.
        root: u64,
    },
    /// Ask for the child hashes of `nodes` at `level`.
    Children {
        /// Level of the nodes (0 is the root).
        level: u8,
        /// Node indexes within the level.
        nodes: Vec<u32>,
    },
    /// Compare the contents of leaf buckets.
    Buckets {
        /// Bucket indexes.
        buckets: Vec<u32>,
        /// The initiator's `(key hash, entry digest)` items in them.
        items: Vec<(u64, u64)>,
    },
}

/// Why a responder refused a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The trees have different depths (configurations differ).
    DepthMismatch {
        /// The responder's depth.
        depth: u8,
    },
    /// A level or index out of range, or a request over the batch limits.
    Malformed,
}

/// A step of the exchange, responder to initiator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SyncResponse {
    /// The roots are equal: nothing to do.
    InSync,
    /// The request was refused.
    Refused(Refusal),
    /// Child hashes: [`FANOUT`] per requested node, in request order.
    Children {
        /// Level of the requested nodes.
        level: u8,
        /// The hashes.
        hashes: Vec<u64>,
    },
    /// The result of comparing buckets.
    Buckets {
        /// The responder's records the initiator lacks or holds differently.
        records: Vec<Record>,
        /// Key hashes of the initiator's items the responder lacks or holds
        /// differently: the initiator should send those records.
        want: Vec<u64>,
    },
}

impl SyncRequest {
    /// Approximate encoded size in bytes (fixed-width integers).
    pub fn wire_size(&self) -> usize {
        1 + match self {
            SyncRequest::Root { .. } => 1 + 8,
            SyncRequest::Children { nodes, .. } => 1 + 4 + 4 * nodes.len(),
            SyncRequest::Buckets { buckets, items } => 4 + 4 * buckets.len() + 4 + 16 * items.len(),
        }
    }
}

impl SyncResponse {
    /// Approximate encoded size in bytes (fixed-width integers; records as
    /// [`Record::wire_size`]).
    pub fn wire_size(&self) -> usize {
        1 + match self {
            SyncResponse::InSync => 0,
            SyncResponse::Refused(_) => 2,
            SyncResponse::Children { hashes, .. } => 1 + 4 + 8 * hashes.len(),
            SyncResponse::Buckets { records, want } => {
                4 + records.iter().map(Record::wire_size).sum::<usize>() + 4 + 8 * want.len()
            }
        }
    }
}

impl KvStore {
    /// Answer one step of a peer's [`MerkleSync`]. Reads only; bounded work
    /// for any input.
    pub fn respond(&self, request: &SyncRequest) -> SyncResponse {
        let tree = self.merkle();
        match request {
            SyncRequest::Root { depth, root } => {
                if *depth != tree.depth() {
                    SyncResponse::Refused(Refusal::DepthMismatch {
                        depth: tree.depth(),
                    })
                } else if *root == tree.root() {
                    SyncResponse::InSync
                } else {
                    self.respond_children(0, &[0])
                }
            }
            SyncRequest::Children { level, nodes } => self.respond_children(*level, nodes),
            SyncRequest::Buckets { buckets, items } => self.respond_buckets(buckets, items),
        }
    }

    fn respond_children(&self, level: u8, nodes: &[u32]) -> SyncResponse {
        if nodes.len() > MAX_SYNC_BATCH {
            return SyncResponse::Refused(Refusal::Malformed);
        }
        let mut hashes = Vec::with_capacity(nodes.len() * FANOUT);
        for &n in nodes {
            match self.merkle().children(level, n) {
                Some(c) => hashes.extend_from_slice(c),
                None => return SyncResponse::Refused(Refusal::Malformed),
            }
        }
        SyncResponse::Children { level, hashes }
    }

    fn respond_buckets(&self, buckets: &[u32], items: &[(u64, u64)]) -> SyncResponse {
        let nb = self.merkle().buckets();
        if buckets.len() > MAX_SYNC_BATCH
            || items.len() > MAX_SYNC_ITEMS
            || buckets.iter().any(|&b| b >= nb)
        {
            return SyncResponse::Refused(Refusal::Malformed);
        }
        let theirs: HashSet<(u64, u64)> = items.iter().copied().collect();
        let mut mine = HashSet::new();
        let mut records = Vec::new();
        let unique: BTreeSet<u32> = buckets.iter().copied().collect();
        for b in unique {
            for (h, key, digest) in self.bucket(b) {
                mine.insert((h, digest));
                if !theirs.contains(&(h, digest)) {
                    records.extend(self.record(key));
                }
            }
        }
        let want: BTreeSet<u64> = theirs
            .iter()
            .filter(|i| !mine.contains(i))
            .map(|&(h, _)| h)
            .collect();
        SyncResponse::Buckets {
            records,
            want: want.into_iter().collect(),
        }
    }
}

/// Why a sync session failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SyncError {
    /// The responder refused a request.
    #[error("peer refused the sync request: {0:?}")]
    Refused(Refusal),
    /// The response does not answer the request in flight.
    #[error("response does not match the request")]
    Unexpected,
}

/// Counters of one session.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SyncStats {
    /// Request/response pairs completed.
    pub round_trips: usize,
    /// Bytes of requests sent ([`SyncRequest::wire_size`]).
    pub request_bytes: usize,
    /// Bytes of responses received ([`SyncResponse::wire_size`]).
    pub response_bytes: usize,
}

/// What a finished session yields.
#[derive(Clone, Debug, Default)]
pub struct SyncResult {
    /// Records from the peer: apply with [`KvStore::apply_remote`].
    pub received: Vec<Record>,
    /// Local records the peer lacks or holds differently: send them.
    pub send: Vec<Record>,
    /// Round trips and bytes.
    pub stats: SyncStats,
}

#[derive(Clone, Debug)]
enum InFlight {
    Root,
    Children { level: u8, nodes: Vec<u32> },
    Buckets,
}

/// The initiator's side of a Merkle reconciliation; see the module docs.
///
/// ```text
/// let mut sync = MerkleSync::new();
/// while let Some(req) = sync.next_request(&store) {
///     let resp = /* send req, receive peer.respond(&req) */;
///     sync.handle_response(&store, resp)?;
/// }
/// let result = sync.finish();
/// ```
#[derive(Clone, Debug)]
pub struct MerkleSync {
    batch: usize,
    started: bool,
    nodes: VecDeque<(u8, u32)>,
    buckets: VecDeque<u32>,
    in_flight: Option<InFlight>,
    result: SyncResult,
}

impl Default for MerkleSync {
    fn default() -> Self {
        Self::new()
    }
}

impl MerkleSync {
    /// A session to run against one peer.
    pub fn new() -> Self {
        MerkleSync {
            batch: DEFAULT_BATCH,
            started: false,
            nodes: VecDeque::new(),
            buckets: VecDeque::new(),
            in_flight: None,
            result: SyncResult::default(),
        }
    }

    /// Put at most `batch` (1..=[`MAX_SYNC_BATCH`]) nodes or buckets in one
    /// request.
    pub fn with_batch(mut self, batch: usize) -> Self {
        self.batch = batch.clamp(1, MAX_SYNC_BATCH);
        self
    }

    /// The next request to send, or `None` when the session is over (or a
    /// response is still awaited).
    pub fn next_request(&mut self, store: &KvStore) -> Option<SyncRequest> {
        if self.in_flight.is_some() {
            return None;
        }
        let (req, flight) = if !self.started {
            self.started = true;
            let tree = store.merkle();
            let req = SyncRequest::Root {
                depth: tree.depth(),
                root: tree.root(),
            };
            (req, InFlight::Root)
        } else if let Some(&(level, _)) = self.nodes.front() {
            let mut nodes = Vec::new();
            while nodes.len() < self.batch {
                match self.nodes.front() {
                    Some(&(l, n)) if l == level => {
                        nodes.push(n);
                        self.nodes.pop_front();
                    }
                    _ => break,
                }
            }
            let req = SyncRequest::Children {
                level,
                nodes: nodes.clone(),
            };
            (req, InFlight::Children { level, nodes })
        } else if !self.buckets.is_empty() {
            let n = self.batch.min(self.buckets.len());
            let buckets: Vec<u32> = self.buckets.drain(..n).collect();
            let mut items = Vec::new();
            for &b in &buckets {
                items.extend(store.bucket(b).map(|(h, _, d)| (h, d)));
            }
            (SyncRequest::Buckets { buckets, items }, InFlight::Buckets)
        } else {
            return None;
        };
        self.result.stats.request_bytes += req.wire_size();
        self.in_flight = Some(flight);
        Some(req)
    }

    /// Take in the peer's answer to the last request.
    pub fn handle_response(
        &mut self,
        store: &KvStore,
        response: SyncResponse,
    ) -> Result<(), SyncError> {
        let flight = self.in_flight.take().ok_or(SyncError::Unexpected)?;
        self.result.stats.round_trips += 1;
        self.result.stats.response_bytes += response.wire_size();
        match (flight, response) {
            (_, SyncResponse::Refused(r)) => Err(SyncError::Refused(r)),
            (InFlight::Root, SyncResponse::InSync) => Ok(()),
            (InFlight::Root, SyncResponse::Children { level: 0, hashes }) => {
                self.descend(store, 0, &[0], &hashes)
            }
            (InFlight::Children { level, nodes }, SyncResponse::Children { level: l, hashes })
                if l == level =>
            {
                self.descend(store, level, &nodes, &hashes)
            }
            (InFlight::Buckets, SyncResponse::Buckets { records, want }) => {
                self.result.received.extend(records);
                let tree = store.merkle();
                let wanted: BTreeSet<u64> = want.into_iter().collect();
                for &h in &wanted {
                    let bucket = tree.bucket_of(h);
                    let keys = store.bucket(bucket).filter(|&(kh, _, _)| kh == h);
                    for (_, key, _) in keys {
                        self.result.send.extend(store.record(key));
                    }
                }
                Ok(())
            }
            _ => Err(SyncError::Unexpected),
        }
    }

    /// Queue the children of `nodes` at `level` whose hashes differ.
    fn descend(
        &mut self,
        store: &KvStore,
        level: u8,
        nodes: &[u32],
        theirs: &[u64],
    ) -> Result<(), SyncError> {
        if theirs.len() != nodes.len() * FANOUT {
            return Err(SyncError::Unexpected);
        }
        let tree = store.merkle();
        let child_level = level + 1;
        for (&node, remote) in nodes.iter().zip(theirs.chunks_exact(FANOUT)) {
            let local = tree.children(level, node).ok_or(SyncError::Unexpected)?;
            for (i, (a, b)) in local.iter().zip(remote).enumerate() {
                if a == b {
                    continue;
                }
                let child = node * FANOUT as u32 + i as u32;
                if child_level == tree.depth() {
                    self.buckets.push_back(child);
                } else {
                    self.nodes.push_back((child_level, child));
                }
            }
        }
        Ok(())
    }

    /// Whether no request is in flight and none is left to send.
    pub fn is_done(&self) -> bool {
        self.started && self.in_flight.is_none() && self.nodes.is_empty() && self.buckets.is_empty()
    }

    /// End the session: what was received, what to send, and the counters.
    pub fn finish(self) -> SyncResult {
        self.result
    }
}
