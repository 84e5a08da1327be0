//! This node's write session: it numbers the writes the node sends for its
//! clients, so that the state machine applies each of them once however
//! often a leader change makes the node send it again.
//!
//! The session is new each time the node starts. Every write carries, besides
//! its own number, the lowest number the node still waits for; the state
//! machine drops the outcomes below it and refuses a late copy of any of
//! those writes (see `cairn_storage`'s session apply).

use std::collections::BTreeSet;
use std::sync::Mutex;

use cairn_storage::{Command, SessionWrite};

#[derive(Default)]
struct Numbering {
    next: u64,
    waiting: BTreeSet<u64>,
}

/// The numbering of this node's writes.
pub struct WriteSession {
    id: u128,
    numbering: Mutex<Numbering>,
}

impl Default for WriteSession {
    fn default() -> Self {
        Self::new()
    }
}

impl WriteSession {
    /// A fresh session. Its id joins the start time to random bits, so no
    /// two starts of any node share one.
    pub fn new() -> Self {
        Self {
            id: uuid::Uuid::now_v7().as_u128(),
            numbering: Mutex::default(),
        }
    }

    /// Numbers `command` as the session's next write, to be remembered for
    /// `retain_ms` after the session's last write. The write counts as
    /// awaited until the returned ticket is dropped; every retry of it must
    /// send the same command.
    pub fn begin(&self, command: Command, retain_ms: u64) -> (Command, Ticket<'_>) {
        let mut n = self.numbering.lock().unwrap_or_else(|p| p.into_inner());
        let seq = n.next;
        n.next += 1;
        n.waiting.insert(seq);
        let acked_below = n.waiting.first().copied().unwrap_or(seq);
        let write = SessionWrite {
            session: self.id,
            seq,
            acked_below,
            retain_ms,
            command,
        };
        (
            Command::InSession(Box::new(write)),
            Ticket { session: self, seq },
        )
    }
}

/// A write the session still waits for; dropping it (answered, given up
/// or abandoned by its caller) lets the store forget its outcome.
pub struct Ticket<'a> {
    session: &'a WriteSession,
    seq: u64,
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        let mut n = self
            .session
            .numbering
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        n.waiting.remove(&self.seq);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numbers(command: &Command) -> (u128, u64, u64) {
        match command {
            Command::InSession(w) => (w.session, w.seq, w.acked_below),
            other => panic!("not a session write: {other:?}"),
        }
    }

    #[test]
    fn acked_below_is_the_oldest_write_still_awaited() {
        let session = WriteSession::new();
        let (a, ticket_a) = session.begin(Command::Tick, 1);
        let (b, ticket_b) = session.begin(Command::Tick, 1);
        assert_eq!((numbers(&a).1, numbers(&a).2), (0, 0));
        assert_eq!((numbers(&b).1, numbers(&b).2), (1, 0));
        drop(ticket_b);
        let (c, _ticket_c) = session.begin(Command::Tick, 1);
        // 0 is still awaited, so nothing below it may be forgotten.
        assert_eq!((numbers(&c).1, numbers(&c).2), (2, 0));
        drop(ticket_a);
        let (d, _ticket_d) = session.begin(Command::Tick, 1);
        assert_eq!((numbers(&d).1, numbers(&d).2), (3, 2));
        assert_eq!(numbers(&a).0, numbers(&d).0);
        let restarted = WriteSession::new();
        let (e, _ticket_e) = restarted.begin(Command::Tick, 1);
        assert_ne!(numbers(&a).0, numbers(&e).0);
    }
}
