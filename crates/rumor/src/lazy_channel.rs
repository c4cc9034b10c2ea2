//! A broadcast channel that comes into being on its first subscriber.
//!
//! tokio allocates and initialises every slot of a broadcast channel when
//! it is made: a node's 4096-event channel costs a few hundred KB (more
//! before `Event`s were `Arc`s), most of a node's memory when thousands
//! run in one process and nobody listens.
//! Events sent before anyone subscribed reach nobody, exactly as with a
//! channel that has no receivers.

use std::sync::OnceLock;

use tokio::sync::broadcast;

/// A tokio broadcast channel created on first [`subscribe`](Self::subscribe).
#[derive(Debug)]
pub(crate) struct LazyChannel<T> {
    capacity: usize,
    tx: OnceLock<broadcast::Sender<T>>,
}

impl<T: Clone> LazyChannel<T> {
    /// A channel of `capacity` events, not yet allocated.
    pub(crate) fn new(capacity: usize) -> Self {
        LazyChannel {
            capacity,
            tx: OnceLock::new(),
        }
    }

    /// A receiver of every event sent from now on.
    pub(crate) fn subscribe(&self) -> broadcast::Receiver<T> {
        self.tx
            .get_or_init(|| broadcast::channel(self.capacity).0)
            .subscribe()
    }

    /// Pass the event `make` builds to the receivers; `make` runs only if
    /// somebody is subscribed (no allocation for events nobody reads).
    pub(crate) fn send_with(&self, make: impl FnOnce() -> T) {
        if let Some(tx) = self.tx.get().filter(|tx| tx.receiver_count() > 0) {
            let _ = tx.send(make());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_reach_receivers_subscribed_before_them_only() {
        let ch = LazyChannel::new(4);
        ch.send_with(|| 1); // nobody listens: no channel, nothing kept
        assert!(ch.tx.get().is_none());
        let mut rx = ch.subscribe();
        ch.send_with(|| 2);
        assert_eq!(rx.try_recv().ok(), Some(2));
        assert!(rx.try_recv().is_err());
        drop(rx);
        ch.send_with(|| unreachable!("built with nobody subscribed"));
    }
}
