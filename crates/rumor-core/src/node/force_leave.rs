//! Force-leave: an operator marks a dead or unreachable member **left**
//! cluster-wide, and with `prune` has every member forget it at once
//! instead of keeping its tombstone for `tombstone_timeout`.
//!
//! A force-leave is a leave claim made on the member's behalf: the
//! [`Message::Dead`] with `from == name` that a member sends when it leaves,
//! at the incarnation this node knows. So it follows the usual ordering
//! rules: it outranks a death or suspicion at the same incarnation, and a
//! member that is in fact alive refutes it with a higher incarnation, like
//! any false leave (the claim is also sent straight to it). A prune adds a
//! [`Message::Reap`] (its own message type, so that nodes that do not know
//! it skip it and still apply the leave): each member that hears it applies
//! the leave, passes both on, and removes the member from its table. A
//! reaped member that comes back at a higher incarnation is a new name to
//! the others and goes through admission again.

use std::net::SocketAddr;
use std::sync::Arc;

use super::Node;
use crate::member::MemberState;
use crate::message::Message;
use crate::time::Instant;
use crate::Error;

/// Options of [`Node::force_leave`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ForceLeave {
    /// Forget the member everywhere at once instead of keeping a tombstone.
    pub prune: bool,
    /// Also mark a member this node sees alive (it will refute if it is).
    pub force: bool,
}

/// Why a force-leave was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ForceLeaveError {
    /// No member of that name is known here.
    #[error("no member named {0:?} is known here")]
    UnknownMember(String),
    /// The member is alive as far as this node knows.
    #[error(
        "member {0:?} is alive: only a dead, suspect or left member is force-left unless forced"
    )]
    Alive(String),
    /// The name is this node's own.
    #[error("{0:?} is this node: leave instead")]
    Local(String),
}

impl Node {
    /// Mark member `name` left on every member, on its behalf: for a member
    /// that died or cannot be reached and will not leave by itself. With
    /// [`ForceLeave::prune`] every member that hears it also forgets the
    /// member at once. A member seen alive is refused unless
    /// [`ForceLeave::force`]; if it is alive it refutes the leave.
    pub fn force_leave(&mut self, now: Instant, name: &str, opts: ForceLeave) -> Result<(), Error> {
        self.start(now);
        let Some(i) = self.members.get_index_of(name) else {
            return Err(Error::ForceLeave(ForceLeaveError::UnknownMember(
                name.to_owned(),
            )));
        };
        if i == 0 {
            return Err(Error::ForceLeave(ForceLeaveError::Local(name.to_owned())));
        }
        let (name, e) = self
            .members
            .get_index(i)
            .map(|(n, e)| (n.clone(), e.clone()))
            .ok_or_else(|| Error::ForceLeave(ForceLeaveError::UnknownMember(name.to_owned())))?;
        if e.state == MemberState::Alive && !opts.force {
            return Err(Error::ForceLeave(ForceLeaveError::Alive(name.to_string())));
        }
        let leave = Message::Dead {
            incarnation: e.incarnation,
            name: name.clone(),
            from: name.clone(),
        };
        self.on_dead(now, e.incarnation, name.clone(), name.clone(), true);
        if e.state == MemberState::Left {
            // Already left here (on_dead did nothing): tell the others again.
            self.broadcast(name.clone(), leave.clone());
        }
        if !e.state.is_gone() {
            // If it is alive after all, it must hear of this to refute.
            self.send_bare(e.addr(), &leave);
        }
        if opts.prune {
            self.on_reap(now, None, e.incarnation, name);
        }
        self.forward_fresh(now);
        Ok(())
    }

    /// Apply a [`Message::Reap`] (from `from`, `None` for this node's own):
    /// the member left at `incarnation`; forget it now. A stale one (the
    /// member is back at a higher incarnation) is ignored; one about this
    /// node is refuted like a leave.
    pub(super) fn on_reap(
        &mut self,
        now: Instant,
        from: Option<SocketAddr>,
        incarnation: u64,
        name: Arc<str>,
    ) {
        let Some(i) = self.members.get_index_of(&name) else {
            return; // forgotten already, or never known
        };
        if i == 0 {
            if let Some(from) = from {
                self.correct_stale_accusation(from, &name, incarnation);
            }
            self.on_dead(now, incarnation, name.clone(), name, true);
            return;
        }
        if incarnation < self.members[i].incarnation || !self.plausible_claim(i, incarnation) {
            return;
        }
        self.on_dead(now, incarnation, name.clone(), name.clone(), true);
        if !self.members[i].state.is_gone() {
            return;
        }
        // Keyed apart from the leave, which older nodes still need.
        let key: Arc<str> = format!("\u{1}reap\u{1}{name}").into();
        self.broadcast(key, Message::Reap { incarnation, name });
        self.forget(i);
    }
}
