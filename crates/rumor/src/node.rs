//! The [`Node`] handle: the application's side of a running node.

use std::net::SocketAddr;
use std::time::Duration;

use rumor_core::{Member, Tags};
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::driver::Command;
use crate::keyring::{Key, Keyring};
use crate::metrics::Stats;
use crate::seeds::{self, Seed};
use crate::{Builder, Error, MemberEvent};

/// First wait between two join attempts; doubled up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
/// Longest wait between two join attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// A running cluster member. Dropping the handle (or calling
/// [`Node::shutdown`]) stops the node without announcing a leave; call
/// [`Node::leave`] first to leave gracefully.
#[derive(Debug)]
pub struct Node {
    pub(crate) name: String,
    pub(crate) advertise: SocketAddr,
    pub(crate) local_addr: SocketAddr,
    pub(crate) commands: mpsc::Sender<Command>,
    pub(crate) events: broadcast::Sender<MemberEvent>,
    pub(crate) keyring: Option<Keyring>,
    pub(crate) join_timeout: Duration,
    pub(crate) task: Option<JoinHandle<()>>,
}

impl Node {
    /// A builder to configure and start a node.
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// This node's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The address other members reach this node at.
    pub fn advertise_addr(&self) -> SocketAddr {
        self.advertise
    }

    /// The address the sockets are bound to (with the port the OS picked).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Command) -> Result<T, Error> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(make(tx))
            .await
            .map_err(|_| Error::Stopped)?;
        rx.await.map_err(|_| Error::Stopped)
    }

    /// Every member this node knows of, itself and tombstones (dead or
    /// left members not yet reclaimed) included.
    pub async fn members(&self) -> Result<Vec<Member>, Error> {
        self.ask(Command::Members).await
    }

    /// This node as the cluster sees it.
    pub async fn local(&self) -> Result<Member, Error> {
        self.ask(Command::Local).await
    }

    /// Counters of the protocol and the transport, health and membership.
    pub async fn stats(&self) -> Result<Stats, Error> {
        self.ask(Command::Stats).await
    }

    /// The local health score (0 is healthy; higher slows probing down).
    pub async fn awareness(&self) -> Result<u32, Error> {
        Ok(self.stats().await?.awareness)
    }

    /// Members alive or suspect, this node included.
    pub async fn num_live(&self) -> Result<usize, Error> {
        let m = self.stats().await?.members;
        Ok(m.alive + m.suspect)
    }

    /// Membership events from now on: joined, updated, suspect, alive,
    /// failed, left, reaped. A receiver that falls more than 1024 events
    /// behind loses the oldest (it is told how many it missed).
    pub fn subscribe(&self) -> broadcast::Receiver<MemberEvent> {
        self.events.subscribe()
    }

    /// Replace this node's tags and announce them.
    pub async fn set_tags(&self, tags: Tags) -> Result<(), Error> {
        self.ask(|tx| Command::SetTags(tags, tx)).await??;
        Ok(())
    }

    /// Join the cluster through `seeds`, retrying with backoff until at
    /// least one answers or the builder's join timeout passes. Returns the
    /// number of seeds that answered; `Ok(0)` if the only seed is this node.
    pub async fn join<S: Into<Seed>>(
        &self,
        seeds: impl IntoIterator<Item = S>,
    ) -> Result<usize, Error> {
        let seeds: Vec<Seed> = seeds.into_iter().map(Into::into).collect();
        if seeds.is_empty() {
            return Ok(0);
        }
        let deadline = tokio::time::Instant::now() + self.join_timeout;
        let mut backoff = FIRST_BACKOFF;
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            let (addrs, mut problems) = seeds::resolve(&seeds).await;
            if !addrs.is_empty() {
                let (tried, answered) = self.ask(|tx| Command::Join(addrs, tx)).await?;
                if tried == 0 {
                    return Ok(0);
                }
                if answered > 0 {
                    tracing::debug!(node = %self.name, answered, "joined");
                    return Ok(answered);
                }
                problems.push(format!("{tried} seed address(es) did not answer"));
            }
            if tokio::time::Instant::now() + backoff > deadline {
                return Err(Error::JoinFailed {
                    seeds: seeds.iter().map(ToString::to_string).collect(),
                    attempts,
                    reason: problems.join("; "),
                });
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// Leave gracefully: announce it and wait until the announcement has
    /// been gossiped enough, or `timeout` passes. The node keeps running
    /// (and keeps spreading the news) until it is shut down.
    pub async fn leave(&self, timeout: Duration) -> Result<(), Error> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::Leave(tx))
            .await
            .map_err(|_| Error::Stopped)?;
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(Error::Stopped),
            Err(_) => Err(Error::LeaveTimeout(timeout)),
        }
    }

    /// Stop the node and wait for its task to end. No leave is announced:
    /// the others will find this node failed (call [`Node::leave`] first
    /// to leave gracefully).
    pub async fn shutdown(mut self) -> Result<(), Error> {
        let _ = self.commands.send(Command::Shutdown).await;
        if let Some(task) = self.task.take() {
            task.await.map_err(|e| Error::Task(e.to_string()))?;
        }
        Ok(())
    }

    /// The keyring of an encrypted node: changes apply at once.
    pub fn keyring(&self) -> Option<&Keyring> {
        self.keyring.as_ref()
    }

    fn ring(&self) -> Result<&Keyring, Error> {
        self.keyring.as_ref().ok_or(Error::NoKeyring)
    }

    /// Install a key used to decrypt (encrypted nodes only).
    pub fn install_key(&self, key: Key) -> Result<(), Error> {
        self.ring()?.install(key);
        Ok(())
    }

    /// Encrypt with an installed key from now on.
    pub fn use_key(&self, key: &Key) -> Result<(), Error> {
        self.ring()?.use_key(key)
    }

    /// Remove an installed key other than the primary.
    pub fn remove_key(&self, key: &Key) -> Result<(), Error> {
        self.ring()?.remove(key)
    }

    /// The installed keys, primary first.
    pub fn list_keys(&self) -> Result<Vec<Key>, Error> {
        Ok(self.ring()?.keys())
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        // The driver stops when the command channel closes; nothing else
        // to do, and the task is not awaited here.
        if let Some(task) = &self.task {
            if !task.is_finished() {
                let _ = self.commands.try_send(Command::Shutdown);
            }
        }
    }
}
