//! Stream messages over TCP: one request and at most one reply per
//! connection, each authenticated before it is buffered.
//!
//! ```text
//! message = [header length u32 BE][header envelope][body envelope]
//! header  = envelope of [0x5A][body envelope length u32 BE]
//! body    = envelope of the message packed by crate::compress
//! ```
//!
//! Both envelopes come from [`crate::framing`]: the header's carries the
//! cluster label and, in an encrypted cluster, is authenticated by the key.
//! A reader takes the header length, refuses it if the length and the
//! header together would exceed the *pre-auth budget*
//! ([`DEFAULT_PREAUTH_BUDGET`] by default), reads the header and opens it;
//! only an authentic header makes it read the body, and then no more than
//! the length the header states (itself bounded by the largest message).
//! So a peer without the label (or key) gets at most the pre-auth budget of
//! bytes read from it, and a real header is a few dozen bytes.
//!
//! Every connection runs in its own task under limits: one deadline for
//! the whole exchange (connect, request, the driver's answer, reply), not
//! per read, so trickling a byte at a time does not extend it; a cap on
//! incoming connections per source and in total ([`super::admission`]); a
//! cap on outgoing ones. A connection that breaks a limit is cut off,
//! counted, and (incoming) logged at WARN at most once per reason every few
//! seconds ([`super::warn`]); the node carries on.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio::time::timeout;

use rumor_core::message::MessageType;

use crate::compress;
use crate::framing::{Framer, Reject};
use crate::metrics::Counters;

use super::admission::{Admission, Ticket};
use super::warn::WarnLimiter;
use super::Transport;

/// Default most bytes read from a connection before its header is
/// authenticated.
pub const DEFAULT_PREAUTH_BUDGET: usize = 64 * 1024;

/// Smallest pre-auth budget accepted: room for the longest label and an
/// encrypted header.
pub const MIN_PREAUTH_BUDGET: usize = 1024;

/// First byte of a header's plaintext.
const HEADER_MAGIC: u8 = 0x5A;

/// Bytes of a header's plaintext.
const HEADER_LEN: usize = 5;

/// What a stream task hands the driver.
pub(crate) enum FromStream {
    /// A peer's request; the driver answers through `reply`.
    Request {
        from: SocketAddr,
        msg: Vec<u8>,
        reply: oneshot::Sender<Option<Vec<u8>>>,
    },
    /// The outcome of a request this node sent to `to`: the reply, or
    /// `None` if the exchange failed. `unauthenticated`: the peer accepted
    /// the connection but closed it without a reply (what a node does to a
    /// request it cannot authenticate, or one over its stream limits), or
    /// its reply could not be authenticated here. `probe`: the request was
    /// a probe's stream ping (no join waits for it).
    Reply {
        to: SocketAddr,
        msg: Option<Vec<u8>>,
        unauthenticated: bool,
        probe: bool,
    },
    /// A probe's stream ping to `to` connected: that host is up, whether
    /// or not its process answers (see `Node::handle_stream_connected`).
    Connected { to: SocketAddr },
}

/// Limits and shared state of the stream tasks.
pub(crate) struct StreamCtx {
    /// The node's name, the `node` label of the exchange histograms.
    pub node: String,
    pub framer: Framer,
    pub counters: Arc<Counters>,
    /// Deadline of a whole exchange.
    pub timeout: Duration,
    /// Largest message (decompressed), the core's `max_stream_size`.
    pub max_message: usize,
    /// Most bytes read from a connection before its header is authentic
    /// (changed while running by [`StreamCtx::set_preauth_budget`]).
    pub preauth_budget: AtomicUsize,
    /// Caps on incoming connections.
    pub admission: Arc<Admission>,
    /// Rate limit of the WARN lines about hostile connections.
    pub warn: WarnLimiter,
}

/// Why an exchange failed.
#[derive(Debug)]
enum Failure {
    Io(std::io::Error),
    Timeout,
    /// Evicted, still unauthenticated, to make room for a new connection.
    Evicted,
    /// The header states a body over the size limit.
    Oversize(usize),
    /// The header would not fit in the pre-auth budget.
    HeaderTooLong(usize),
    /// The header's envelope was refused.
    Unauthenticated(Reject),
    /// An authentic header whose content is not a header.
    BadHeader,
    /// The body's envelope was refused.
    Reject(Reject),
    Unpack(compress::UnpackError),
    Seal(crate::Error),
    DriverGone,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Io(e) => write!(f, "i/o error: {e}"),
            Failure::Timeout => f.write_str("deadline passed"),
            Failure::Evicted => f.write_str("evicted before authenticating (all slots taken)"),
            Failure::Oversize(n) => write!(f, "body of {n} bytes is over the limit"),
            Failure::HeaderTooLong(n) => {
                write!(f, "header of {n} bytes is over the pre-auth budget")
            }
            Failure::Unauthenticated(r) => write!(f, "header rejected: {r}"),
            Failure::BadHeader => f.write_str("malformed header"),
            Failure::Reject(r) => write!(f, "body rejected: {r}"),
            Failure::Unpack(e) => write!(f, "decompression failed: {e}"),
            Failure::Seal(e) => write!(f, "could not seal: {e}"),
            Failure::DriverGone => f.write_str("node stopped"),
        }
    }
}

impl Failure {
    /// The reason's name when an incoming connection is refused for it
    /// (logged at WARN), or `None` for failures that are not a peer's doing.
    fn refusal(&self) -> Option<&'static str> {
        match self {
            Failure::Timeout => Some("deadline"),
            Failure::Evicted => Some("evicted"),
            Failure::Oversize(_) | Failure::HeaderTooLong(_) => Some("oversize"),
            Failure::Unauthenticated(_) | Failure::BadHeader => Some("unauthenticated"),
            _ => None,
        }
    }
}

/// A stream that counts the bytes read from it, and how many of them came
/// before the header was found authentic; an incoming one holds its
/// admission ticket.
struct Counted<S> {
    inner: S,
    read: u64,
    authentic_after: Option<u64>,
    ticket: Option<Ticket>,
}

impl<S> Counted<S> {
    fn new(inner: S) -> Self {
        Counted {
            inner,
            read: 0,
            authentic_after: None,
            ticket: None,
        }
    }

    /// The header was authentic: note where, and make the connection
    /// impossible to evict.
    fn authentic(&mut self) {
        self.authentic_after = Some(self.read);
        if let Some(t) = &self.ticket {
            t.authenticated();
        }
    }

    /// Bytes read before the header was authentic (all of them if it
    /// never was).
    fn preauth(&self) -> u64 {
        self.authentic_after.unwrap_or(self.read)
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Counted<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        self.read += (buf.filled().len() - before) as u64;
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counted<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Read exactly `len` bytes, growing the buffer as they arrive rather than
/// trusting the length: a peer must send the bytes to make us hold them.
async fn read_exactly<S: AsyncRead + Unpin>(s: &mut S, len: usize) -> Result<Vec<u8>, Failure> {
    let mut out = Vec::with_capacity(len.min(16 * 1024));
    s.take(len as u64)
        .read_to_end(&mut out)
        .await
        .map_err(Failure::Io)?;
    if out.len() != len {
        return Err(Failure::Io(std::io::ErrorKind::UnexpectedEof.into()));
    }
    Ok(out)
}

/// A header's plaintext for a body envelope of `len` bytes.
fn header_plain(len: u32) -> [u8; HEADER_LEN] {
    let [a, b, c, d] = len.to_be_bytes();
    [HEADER_MAGIC, a, b, c, d]
}

/// The body length a header's plaintext states.
fn parse_header(plain: &[u8]) -> Option<usize> {
    match plain {
        [HEADER_MAGIC, a, b, c, d] => Some(u32::from_be_bytes([*a, *b, *c, *d]) as usize),
        _ => None,
    }
}

impl StreamCtx {
    /// The pre-auth budget in force.
    pub(crate) fn preauth_budget(&self) -> usize {
        self.preauth_budget.load(Ordering::Relaxed)
    }

    /// Change the pre-auth budget (at least [`MIN_PREAUTH_BUDGET`]); a
    /// connection reading its header already keeps the budget it checked.
    pub(crate) fn set_preauth_budget(&self, bytes: usize) {
        self.preauth_budget
            .store(bytes.max(MIN_PREAUTH_BUDGET), Ordering::Relaxed);
    }

    /// Largest body envelope accepted: the largest message, its compression
    /// header and the envelope.
    fn max_body(&self) -> usize {
        self.max_message + 1 + 4 + self.framer.overhead()
    }

    fn count(&self, f: &Failure) {
        let c = &self.counters;
        match f {
            Failure::Io(_) | Failure::Seal(_) | Failure::DriverGone => {
                Counters::inc(&c.stream_errors)
            }
            Failure::Timeout => Counters::inc(&c.stream_timeouts),
            Failure::Evicted => Counters::inc(&c.streams_evicted),
            Failure::Oversize(_) | Failure::HeaderTooLong(_) => Counters::inc(&c.streams_oversize),
            Failure::Unauthenticated(r) => {
                Counters::inc(&c.streams_unauthenticated);
                c.reject(*r);
            }
            Failure::BadHeader => {
                Counters::inc(&c.streams_unauthenticated);
                Counters::inc(&c.malformed);
            }
            Failure::Reject(r) => c.reject(*r),
            Failure::Unpack(_) => Counters::inc(&c.compression_errors),
        }
    }

    /// Count what was read from `conn`.
    fn account<S>(&self, conn: &Counted<S>) {
        let c = &self.counters;
        c.stream_bytes_in
            .fetch_add(conn.read, std::sync::atomic::Ordering::Relaxed);
        c.stream_preauth_bytes_in
            .fetch_add(conn.preauth(), std::sync::atomic::Ordering::Relaxed);
    }

    async fn read_message<S: AsyncRead + Unpin>(
        &self,
        s: &mut Counted<S>,
    ) -> Result<Vec<u8>, Failure> {
        let mut len = [0u8; 4];
        s.read_exact(&mut len).await.map_err(Failure::Io)?;
        let header_len = u32::from_be_bytes(len) as usize;
        if header_len.saturating_add(4) > self.preauth_budget() {
            return Err(Failure::HeaderTooLong(header_len));
        }
        let header = read_exactly(s, header_len).await?;
        let plain = self
            .framer
            .open(&header)
            .map_err(Failure::Unauthenticated)?;
        let body_len = parse_header(&plain).ok_or(Failure::BadHeader)?;
        s.authentic();
        if body_len > self.max_body() {
            return Err(Failure::Oversize(body_len));
        }
        let body = read_exactly(s, body_len).await?;
        let body = self.framer.open(&body).map_err(Failure::Reject)?;
        let msg = compress::unpack(&body, self.max_message).map_err(Failure::Unpack)?;
        Ok(msg.into_owned())
    }

    /// Write `msg` to `s`; the bytes written.
    async fn write_message<S: AsyncWrite + Unpin>(
        &self,
        s: &mut S,
        msg: &[u8],
    ) -> Result<usize, Failure> {
        let body = self
            .framer
            .seal(&compress::pack(msg))
            .map_err(Failure::Seal)?;
        let body_len = u32::try_from(body.len()).map_err(|_| Failure::Oversize(body.len()))?;
        let header = self
            .framer
            .seal(&header_plain(body_len))
            .map_err(Failure::Seal)?;
        let header_len =
            u32::try_from(header.len()).map_err(|_| Failure::HeaderTooLong(header.len()))?;
        let mut out = Vec::with_capacity(4 + header.len() + body.len());
        out.extend_from_slice(&header_len.to_be_bytes());
        out.extend_from_slice(&header);
        out.extend_from_slice(&body);
        s.write_all(&out).await.map_err(Failure::Io)?;
        s.flush().await.map_err(Failure::Io)?;
        Counters::add(&self.counters.stream_bytes_out, out.len());
        Ok(out.len())
    }

    /// Count a failed incoming exchange and log it: at WARN (rate-limited)
    /// when the peer broke a limit, at DEBUG otherwise.
    fn incoming_failed(&self, peer: SocketAddr, f: &Failure) {
        self.count(f);
        match f.refusal() {
            Some(reason) => {
                if let Some(held) = self.warn.allow(reason) {
                    tracing::warn!(%peer, reason, failure = %f, similar_lines_held_back = held,
                        "incoming stream cut off");
                }
            }
            None => tracing::debug!(%peer, failure = %f, "incoming stream dropped"),
        }
    }
}

/// Run `fut` under the deadline `limit`.
async fn deadline<T>(
    limit: Duration,
    fut: impl std::future::Future<Output = Result<T, Failure>>,
) -> Result<T, Failure> {
    timeout(limit, fut).await.unwrap_or(Err(Failure::Timeout))
}

/// Serve one incoming connection: read the request, let the driver answer,
/// write the answer back, all before one deadline.
pub(crate) async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    ctx: Arc<StreamCtx>,
    stream: S,
    peer: SocketAddr,
    driver: mpsc::Sender<FromStream>,
    mut ticket: Ticket,
) {
    let evicted = ticket.eviction();
    let mut conn = Counted::new(stream);
    conn.ticket = Some(ticket);
    let exchange = async {
        let msg = ctx.read_message(&mut conn).await?;
        let (tx, rx) = oneshot::channel();
        driver
            .send(FromStream::Request {
                from: peer,
                msg,
                reply: tx,
            })
            .await
            .map_err(|_| Failure::DriverGone)?;
        if let Some(reply) = rx.await.map_err(|_| Failure::DriverGone)? {
            ctx.write_message(&mut conn, &reply).await?;
        }
        Ok::<_, Failure>(())
    };
    let result = tokio::select! {
        r = deadline(ctx.timeout, exchange) => r,
        () = evicted => Err(Failure::Evicted),
    };
    ctx.account(&conn);
    if let Err(f) = result {
        ctx.incoming_failed(peer, &f);
    }
}

/// Send one request to `to` and hand the reply (or the failure) to the
/// driver; the whole exchange has one deadline: the stream timeout, or
/// `deadline` if the core gave a shorter one (a probe's stream ping, which
/// is of no use after the probe's end; `probe` is then set in the reply).
pub(crate) async fn request<T: Transport>(
    ctx: Arc<StreamCtx>,
    to: SocketAddr,
    msg: Vec<u8>,
    deadline_hint: Option<Duration>,
    driver: mpsc::Sender<FromStream>,
    _permit: OwnedSemaphorePermit,
) {
    Counters::inc(&ctx.counters.streams_dialed);
    let started = tokio::time::Instant::now();
    let mut conn = None;
    let mut written = 0;
    let exchange = async {
        let stream = T::connect(to).await.map_err(Failure::Io)?;
        if deadline_hint.is_some() {
            // Best effort: if the driver's queue is full, the probe is
            // judged as if the host had not answered.
            let _ = driver.try_send(FromStream::Connected { to });
        }
        let conn = conn.insert(Counted::new(stream));
        written = ctx.write_message(conn, &msg).await?;
        ctx.read_message(conn).await
    };
    let limit = deadline_hint.map_or(ctx.timeout, |d| d.min(ctx.timeout));
    let result = deadline(limit, exchange).await;
    if let Some(conn) = &conn {
        ctx.account(conn);
        if result.is_ok() {
            let bytes = conn.read + written as u64;
            let kind = request_kind(&msg);
            crate::metrics::record_exchange(&ctx.node, kind, started.elapsed(), bytes);
        }
    }
    let connected_unanswered = conn.as_ref().is_some_and(|c| c.read == 0);
    let (reply, unauthenticated) = match result {
        Ok(reply) => (Some(reply), false),
        Err(f) => {
            ctx.count(&f);
            tracing::debug!(%to, failure = %f, "outgoing stream failed");
            let unauthenticated = match f {
                Failure::Io(_) => connected_unanswered,
                Failure::Unauthenticated(_) | Failure::Reject(_) | Failure::BadHeader => true,
                _ => false,
            };
            (None, unauthenticated)
        }
    };
    let _ = driver
        .send(FromStream::Reply {
            to,
            msg: reply,
            unauthenticated,
            probe: deadline_hint.is_some(),
        })
        .await;
}

/// The message type of a stream request (its second byte, after the
/// protocol version: see `rumor_core::codec`), as metrics name it.
fn request_kind(msg: &[u8]) -> &'static str {
    msg.get(1)
        .and_then(|&code| MessageType::from_code(code))
        .map_or("unknown", MessageType::as_str)
}

/// Change the outbound semaphore's capacity from `old` to `new` permits
/// while streams hold some: a raise adds permits at once; a lowering takes
/// the free ones away now and, for the rest, queues a task on `tasks` that
/// takes (and forgets) permits as streams in flight finish, so none is cut
/// off and no new one starts until the count is under `new`.
pub(crate) fn resize_outbound(
    sem: &Arc<Semaphore>,
    old: usize,
    new: usize,
    tasks: &mut JoinSet<()>,
) {
    if new > old {
        sem.add_permits(new - old);
        return;
    }
    let debt = (old - new).saturating_sub(sem.forget_permits(old - new));
    if debt == 0 {
        return;
    }
    let sem = sem.clone();
    let debt = u32::try_from(debt).unwrap_or(u32::MAX);
    tasks.spawn(async move {
        if let Ok(permits) = sem.acquire_many_owned(debt).await {
            permits.forget();
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keyring::{Key, Keyring};

    fn ctx(framer: Framer) -> StreamCtx {
        StreamCtx {
            node: "t".into(),
            framer,
            counters: Arc::new(Counters::default()),
            timeout: Duration::from_secs(5),
            max_message: 1 << 20,
            preauth_budget: AtomicUsize::new(DEFAULT_PREAUTH_BUDGET),
            admission: Admission::new(4, 8),
            warn: WarnLimiter::default(),
        }
    }

    #[tokio::test]
    async fn outbound_cap_changes_without_cutting_streams_in_flight() {
        let sem = Arc::new(Semaphore::new(4));
        let mut tasks = JoinSet::new();
        let held: Vec<OwnedSemaphorePermit> = (0..3)
            .map(|_| sem.clone().try_acquire_owned().expect("a permit"))
            .collect();
        resize_outbound(&sem, 4, 1, &mut tasks);
        assert!(sem.clone().try_acquire_owned().is_err(), "3 held, cap 1");
        drop(held);
        // Two of the three returned permits pay the debt; one is free.
        tokio::time::timeout(Duration::from_secs(5), async {
            while !tasks.is_empty() {
                tasks.join_next().await;
            }
        })
        .await
        .expect("the debt is paid as streams finish");
        assert_eq!(sem.available_permits(), 1);
        resize_outbound(&sem, 1, 3, &mut tasks);
        assert_eq!(sem.available_permits(), 3);
    }

    async fn round_trip(
        writer: &StreamCtx,
        reader: &StreamCtx,
        msg: &[u8],
    ) -> Result<Vec<u8>, Failure> {
        let (mut a, b) = tokio::io::duplex(1 << 16);
        let mut conn = Counted::new(b);
        let write = async {
            let w = writer.write_message(&mut a, msg).await;
            drop(a);
            w
        };
        let (w, r) = tokio::join!(write, reader.read_message(&mut conn));
        w?;
        reader.account(&conn);
        if let Err(f) = &r {
            reader.count(f);
        }
        r
    }

    #[tokio::test]
    async fn messages_round_trip_plain_and_sealed() {
        let plain = ctx(Framer::new("l", None).expect("framer"));
        assert_eq!(
            round_trip(&plain, &plain, b"hello").await.expect("plain"),
            b"hello"
        );
        let ring = Keyring::new(Key::from_bytes([7; 32]));
        let sealed = ctx(Framer::new("l", Some(ring)).expect("framer"));
        let big = vec![3u8; 200_000];
        assert_eq!(
            round_trip(&sealed, &sealed, &big).await.expect("sealed"),
            big
        );
        let t = sealed.counters.snapshot();
        assert!(t.stream_preauth_bytes_in < 128, "{t:?}");
        assert!(t.stream_bytes_in > t.stream_preauth_bytes_in, "{t:?}");
    }

    #[tokio::test]
    async fn a_wrong_key_or_label_is_refused_at_the_header() {
        let a = ctx(Framer::new("l", Some(Keyring::new(Key::from_bytes([1; 32])))).expect("f"));
        let b = ctx(Framer::new("l", Some(Keyring::new(Key::from_bytes([2; 32])))).expect("f"));
        let r = round_trip(&a, &b, &vec![0u8; 100_000]).await;
        assert!(
            matches!(r, Err(Failure::Unauthenticated(Reject::AuthFailed))),
            "{r:?}"
        );
        let t = b.counters.snapshot();
        assert_eq!((t.streams_unauthenticated, t.auth_failures), (1, 1));
        assert_eq!(t.stream_bytes_in, t.stream_preauth_bytes_in, "no body read");
        assert!(t.stream_bytes_in < 128, "{t:?}");

        let other = ctx(Framer::new("m", None).expect("f"));
        let plain = ctx(Framer::new("l", None).expect("f"));
        let r = round_trip(&other, &plain, b"x").await;
        assert!(
            matches!(r, Err(Failure::Unauthenticated(Reject::LabelMismatch))),
            "{r:?}"
        );
    }

    #[tokio::test]
    async fn headers_over_the_budget_and_bodies_over_the_limit_are_refused() {
        let c = ctx(Framer::new("", None).expect("f"));
        let (mut a, b) = tokio::io::duplex(1 << 16);
        a.write_all(&u32::MAX.to_be_bytes()).await.expect("write");
        let mut conn = Counted::new(b);
        let r = c.read_message(&mut conn).await;
        assert!(matches!(r, Err(Failure::HeaderTooLong(_))), "{r:?}");
        assert_eq!(conn.read, 4);

        let (mut a, b) = tokio::io::duplex(1 << 16);
        let header = c.framer.seal(&header_plain(u32::MAX)).expect("seal");
        a.write_all(&(header.len() as u32).to_be_bytes())
            .await
            .expect("write");
        a.write_all(&header).await.expect("write");
        let mut conn = Counted::new(b);
        let r = c.read_message(&mut conn).await;
        assert!(matches!(r, Err(Failure::Oversize(_))), "{r:?}");

        // An authentic envelope that is not a header (an old-style frame).
        let (mut a, b) = tokio::io::duplex(1 << 16);
        let frame = c
            .framer
            .seal(&compress::pack(b"not a header"))
            .expect("seal");
        a.write_all(&(frame.len() as u32).to_be_bytes())
            .await
            .expect("write");
        a.write_all(&frame).await.expect("write");
        let r = c.read_message(&mut Counted::new(b)).await;
        assert!(matches!(r, Err(Failure::BadHeader)), "{r:?}");
    }

    #[test]
    fn a_request_is_named_by_its_message_type() {
        use rumor_core::codec::encode_packet;
        use rumor_core::message::Message;
        let ack = encode_packet(&Message::Ack { seq: 1 });
        assert_eq!(request_kind(&ack), "ack");
        assert_eq!(request_kind(&[1]), "unknown");
        assert_eq!(request_kind(&[1, 200]), "unknown");
    }
}
