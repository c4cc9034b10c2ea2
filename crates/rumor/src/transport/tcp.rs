//! Stream messages over TCP: one request frame and at most one reply frame
//! per connection.
//!
//! A frame is `[length u32 BE][envelope]`, the envelope (see
//! [`crate::framing`]) holding the message packed by [`crate::compress`].
//! Every connection runs in its own task under limits: a connect timeout, a
//! timeout on each read and write, a maximum frame size, and a cap on how
//! many connections are open at once in each direction. A connection that
//! breaks a limit is cut off and counted; the node carries on.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit};
use tokio::time::timeout;

use crate::compress;
use crate::framing::{Framer, Reject};
use crate::metrics::Counters;

use super::Transport;

/// What a stream task hands the driver.
pub(crate) enum FromStream {
    /// A peer's request; the driver answers through `reply`.
    Request {
        from: SocketAddr,
        msg: Vec<u8>,
        reply: oneshot::Sender<Option<Vec<u8>>>,
    },
    /// The outcome of a request this node sent to `to`: the reply, or
    /// `None` if the exchange failed.
    Reply {
        to: SocketAddr,
        msg: Option<Vec<u8>>,
    },
}

/// Limits and shared state of the stream tasks.
pub(crate) struct StreamCtx {
    pub framer: Framer,
    pub counters: Arc<Counters>,
    /// Connect, read and write timeout.
    pub timeout: Duration,
    /// Largest message (decompressed), the core's `max_stream_size`.
    pub max_message: usize,
}

/// Why an exchange failed.
#[derive(Debug)]
enum Failure {
    Io(std::io::Error),
    Timeout,
    Oversize(usize),
    Reject(Reject),
    Unpack(compress::UnpackError),
    Seal(crate::Error),
    DriverGone,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Io(e) => write!(f, "i/o error: {e}"),
            Failure::Timeout => f.write_str("timed out"),
            Failure::Oversize(n) => write!(f, "frame of {n} bytes is over the limit"),
            Failure::Reject(r) => write!(f, "envelope rejected: {r}"),
            Failure::Unpack(e) => write!(f, "decompression failed: {e}"),
            Failure::Seal(e) => write!(f, "could not seal: {e}"),
            Failure::DriverGone => f.write_str("node stopped"),
        }
    }
}

impl StreamCtx {
    /// Largest frame accepted: the largest message, its compression header
    /// and the envelope.
    fn max_frame(&self) -> usize {
        self.max_message + 1 + 4 + self.framer.overhead()
    }

    fn count(&self, f: &Failure) {
        let c = &self.counters;
        match f {
            Failure::Io(_) | Failure::Seal(_) | Failure::DriverGone => {
                Counters::inc(&c.stream_errors)
            }
            Failure::Timeout => Counters::inc(&c.stream_timeouts),
            Failure::Oversize(_) => Counters::inc(&c.streams_oversize),
            Failure::Reject(r) => c.reject(*r),
            Failure::Unpack(_) => Counters::inc(&c.compression_errors),
        }
    }

    async fn read_message<S: AsyncRead + Unpin>(&self, s: &mut S) -> Result<Vec<u8>, Failure> {
        let mut len = [0u8; 4];
        timed(self.timeout, s.read_exact(&mut len)).await?;
        let len = u32::from_be_bytes(len) as usize;
        if len > self.max_frame() {
            return Err(Failure::Oversize(len));
        }
        // Grow the buffer as bytes arrive rather than trusting the length:
        // a peer must send the bytes to make this node hold them.
        let mut frame = Vec::with_capacity(len.min(64 * 1024));
        timed(
            self.timeout,
            (&mut *s).take(len as u64).read_to_end(&mut frame),
        )
        .await?;
        if frame.len() != len {
            return Err(Failure::Io(std::io::ErrorKind::UnexpectedEof.into()));
        }
        Counters::add(&self.counters.stream_bytes_in, 4 + len);
        let body = self.framer.open(&frame).map_err(Failure::Reject)?;
        let msg = compress::unpack(&body, self.max_message).map_err(Failure::Unpack)?;
        Ok(msg.into_owned())
    }

    async fn write_message<S: AsyncWrite + Unpin>(
        &self,
        s: &mut S,
        msg: &[u8],
    ) -> Result<(), Failure> {
        let frame = self
            .framer
            .seal(&compress::pack(msg))
            .map_err(Failure::Seal)?;
        let len = u32::try_from(frame.len()).map_err(|_| Failure::Oversize(frame.len()))?;
        let mut out = Vec::with_capacity(4 + frame.len());
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&frame);
        timed(self.timeout, s.write_all(&out)).await?;
        timed(self.timeout, s.flush()).await?;
        Counters::add(&self.counters.stream_bytes_out, out.len());
        Ok(())
    }
}

async fn timed<T>(
    limit: Duration,
    fut: impl std::future::Future<Output = std::io::Result<T>>,
) -> Result<T, Failure> {
    match timeout(limit, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(Failure::Io(e)),
        Err(_) => Err(Failure::Timeout),
    }
}

/// Serve one incoming connection: read the request, let the driver answer,
/// write the answer back.
pub(crate) async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    ctx: Arc<StreamCtx>,
    mut stream: S,
    peer: SocketAddr,
    driver: mpsc::Sender<FromStream>,
    _permit: OwnedSemaphorePermit,
) {
    let result = async {
        let msg = ctx.read_message(&mut stream).await?;
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
            ctx.write_message(&mut stream, &reply).await?;
        }
        Ok::<_, Failure>(())
    }
    .await;
    if let Err(f) = result {
        ctx.count(&f);
        tracing::debug!(%peer, failure = %f, "incoming stream dropped");
    }
}

/// Send one request to `to` and hand the reply (or the failure) to the driver.
pub(crate) async fn request<T: Transport>(
    ctx: Arc<StreamCtx>,
    to: SocketAddr,
    msg: Vec<u8>,
    driver: mpsc::Sender<FromStream>,
    _permit: OwnedSemaphorePermit,
) {
    Counters::inc(&ctx.counters.streams_dialed);
    let result = async {
        let mut stream = timed(ctx.timeout, T::connect(to)).await?;
        ctx.write_message(&mut stream, &msg).await?;
        ctx.read_message(&mut stream).await
    }
    .await;
    let reply = match result {
        Ok(reply) => Some(reply),
        Err(f) => {
            ctx.count(&f);
            tracing::debug!(%to, failure = %f, "outgoing stream failed");
            None
        }
    };
    let _ = driver.send(FromStream::Reply { to, msg: reply }).await;
}
