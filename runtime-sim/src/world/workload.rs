//! The simulated users: they discover each other, open chats, answer requests, send
//! messages both ways, close chats, leave and come back. Scripted tests call the same
//! commands directly.

use core::time::Duration;

use p2pchat_core::nick::Nick;
use p2pchat_core::peer::CommandError;

use super::{Phase, SimEvent, Status, World};

impl World {
    /// Peer `i`'s user acts once, then plans the next action.
    pub(super) fn act(&mut self, i: usize, incarnation: u32) {
        let host = &self.peers[i];
        if host.incarnation != incarnation || host.status != Status::Up {
            return;
        }
        if self.phase != Phase::Running {
            return;
        }
        self.schedule_act(i, incarnation);
        if !self.peers[i].registered {
            return;
        }
        let chats: Vec<Nick> = self.peers[i]
            .core
            .as_ref()
            .map(|c| c.chats().cloned().collect())
            .unwrap_or_default();
        let w = self.config.workload.clone();
        let draw = self.sampler.unit();
        if draw < w.leave_probability {
            return self.leave(i);
        }
        if draw < w.leave_probability + w.close_probability && !chats.is_empty() {
            let nick = chats[self.sampler.below(chats.len())].clone();
            if let Some(j) = self.by_nick.get(&nick).copied() {
                self.close_chat(i, j);
            }
            return;
        }
        // Write to a contact whether or not a chat is open (or the contact online): the
        // message waits in the outbox until it can be delivered.
        if self.sampler.chance(w.contact_message_probability) {
            let contacts: Vec<Nick> = self.peers[i]
                .core
                .as_ref()
                .map(|c| {
                    c.contacts()
                        .into_iter()
                        .filter(|c| !c.blocked && c.conflict.is_none())
                        .map(|c| c.nick)
                        .collect()
                })
                .unwrap_or_default();
            if !contacts.is_empty() {
                let nick = contacts[self.sampler.below(contacts.len())].clone();
                if let Some(j) = self.by_nick.get(&nick).copied() {
                    let len = self.message_len();
                    let _ = self.send(i, j, len);
                    return;
                }
            }
        }
        let wants_chat =
            chats.len() < w.chats_per_user && (chats.is_empty() || self.sampler.chance(0.1));
        if wants_chat {
            return self.open_random_chat(i, &chats);
        }
        if !chats.is_empty() {
            let nick = chats[self.sampler.below(chats.len())].clone();
            if let Some(j) = self.by_nick.get(&nick).copied() {
                let len = self.message_len();
                // A full outbox or a closing chat refuses the message: the user sees why
                // and nothing was accepted, so nothing is lost.
                let _ = self.send(i, j, len);
            }
        }
    }

    /// Plans peer `i`'s next action, a think time from now.
    pub(super) fn schedule_act(&mut self, i: usize, incarnation: u32) {
        let think = self.sampler.exponential(self.config.workload.think_time);
        self.queue.push(
            self.now + think,
            SimEvent::Act {
                peer: i,
                incarnation,
            },
        );
    }

    /// Opens a chat with someone `i` has discovered, or looks for people first.
    fn open_random_chat(&mut self, i: usize, chats: &[Nick]) {
        let candidates: Vec<usize> = self.peers[i]
            .known
            .iter()
            .copied()
            .filter(|j| *j != i && !chats.contains(&self.peers[*j].identity.nick))
            .collect();
        if candidates.is_empty() || self.sampler.chance(0.05) {
            let letter = (b'a' + self.sampler.below(26) as u8) as char;
            let now = self.now;
            if let Some(core) = &mut self.peers[i].core {
                core.refresh_users(now, &letter.to_string(), None);
            }
            return self.pump_peer(i);
        }
        let j = candidates[self.sampler.below(candidates.len())];
        let _ = self.connect(i, j);
    }

    /// A message length: mostly short, sometimes a few KiB.
    fn message_len(&mut self) -> usize {
        if self.sampler.chance(0.05) {
            300 + self.sampler.below(3700)
        } else {
            20 + self.sampler.below(280)
        }
    }

    /// Peer `i` gets a chat request from peer `from`: its user answers after a while.
    pub(super) fn schedule_decision(&mut self, i: usize, from: usize, request: u64) {
        let accept = !self.deny.contains(&(i, from))
            && !self.sampler.chance(self.config.workload.deny_probability);
        let think = if self.config.workload.enabled {
            self.sampler
                .between(Duration::from_millis(500), Duration::from_secs(5))
        } else {
            Duration::from_millis(100)
        };
        let incarnation = self.peers[i].incarnation;
        self.queue.push(
            self.now + think,
            SimEvent::Decide {
                peer: i,
                incarnation,
                request,
                accept,
            },
        );
    }

    pub(super) fn decide(&mut self, i: usize, incarnation: u32, request: u64, accept: bool) {
        let now = self.now;
        let host = &mut self.peers[i];
        if host.incarnation != incarnation {
            return;
        }
        let Some(core) = &mut host.core else { return };
        // The request may have expired or been withdrawn meanwhile; then there is
        // nothing to answer.
        let _ = if accept {
            core.accept(now, request)
        } else {
            core.deny(now, request, "not now, sorry")
        };
        self.pump_peer(i);
    }

    // ----- commands (the workload's and scripted tests') -----

    /// Peer `i` opens a chat with peer `j`.
    pub fn connect(&mut self, i: usize, j: usize) -> Result<(), CommandError> {
        let now = self.now;
        let nick = self.peers[j].identity.nick.clone();
        let result = match &mut self.peers[i].core {
            Some(core) => core.connect(now, &nick),
            None => Err(CommandError::ShuttingDown),
        };
        self.pump_peer(i);
        result
    }

    /// Peer `i` sends a message of `len` bytes to peer `j`. Returns the message's number
    /// in the ledger (see [`World::fate`]) once the sender has stored it; an error if the
    /// core refused it, or if the sender crashed before storing it (then it was never
    /// accepted).
    pub fn send(&mut self, i: usize, j: usize, len: usize) -> Result<u64, CommandError> {
        let now = self.now;
        let nick = self.peers[j].identity.nick.clone();
        let text = self.ledger.next_text(len);
        let number = self.ledger.sent_count();
        let id = match &mut self.peers[i].core {
            Some(core) => core.send(now, &nick, &text)?,
            None => return Err(CommandError::ShuttingDown),
        };
        if self.trace.wants_lines() {
            let line = format!("peer {i}: sent #{number} to peer {j} as id {id}");
            self.trace.line(now.as_micros(), &line);
        }
        self.pump_peer(i);
        if self.ledger.sent_count() == number {
            return Err(CommandError::ShuttingDown);
        }
        if self.config.workload.enabled && self.ledger.sent_count() >= self.config.messages {
            self.begin_settling();
        }
        Ok(number)
    }

    /// Peer `i` closes its chat with peer `j`.
    pub fn close_chat(&mut self, i: usize, j: usize) {
        let now = self.now;
        let nick = self.peers[j].identity.nick.clone();
        if let Some(core) = &mut self.peers[i].core {
            // No chat (it just ended) is fine: closing is what the user wanted.
            let _ = core.close_chat(now, &nick, "bye");
        }
        self.pump_peer(i);
    }
}
