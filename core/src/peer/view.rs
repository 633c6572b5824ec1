//! What a user sees, in one value: the registry link, contacts, chats, pending requests and
//! what waits in the outbox. An interface draws this and never keeps its own copy of the
//! core's state: after any event it may read the view again (a runtime publishes it after
//! each drain), so an interface that missed events catches up from it.

use super::connection::Stage;
use super::{ChatState, ContactView, Peer, StoreOp};
use crate::identity::{Fingerprint, OnionAddress};
use crate::nick::Nick;
use crate::time::Instant;

/// Where we stand with the registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistryView {
    /// Not asked to register (yet).
    Idle,
    /// Connecting, or registering.
    Connecting {
        /// Why the previous attempt failed, if one did.
        after: Option<String>,
    },
    /// Registered and listed.
    Registered,
    /// Lost or refused; tried again at `retry_at` if it is set.
    Down {
        /// Why, for the user.
        reason: String,
        /// When the next attempt starts.
        retry_at: Option<Instant>,
    },
}

/// A chat, as a user interface shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatView {
    /// With whom.
    pub nick: Nick,
    /// Where it stands.
    pub state: ChatState,
    /// The key it authenticates, once known.
    pub fingerprint: Option<Fingerprint>,
    /// Messages received in it that the user has not marked read.
    pub unread: usize,
}

/// A pending request to chat, waiting for the user's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestView {
    /// Pass to `accept` or `deny`.
    pub request: u64,
    /// Who asks (authenticated).
    pub nick: Nick,
    /// Their key's fingerprint.
    pub fingerprint: Fingerprint,
}

/// Everything a user interface draws.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerView {
    /// Our nick.
    pub nick: Nick,
    /// Our onion address.
    pub onion: OnionAddress,
    /// Our key's fingerprint.
    pub fingerprint: Fingerprint,
    /// The registry link.
    pub registry: RegistryView,
    /// Every contact, in nick order (presence, queued messages, refused keys).
    pub contacts: Vec<ContactView>,
    /// Every chat, in nick order (contacts' and strangers').
    pub chats: Vec<ChatView>,
    /// Requests waiting for the user, oldest first.
    pub requests: Vec<RequestView>,
    /// Messages waiting in the outbox, over every contact.
    pub queued: usize,
    /// The core's time when the view was made (to tell how far `Retrying { at }` is).
    pub now: Instant,
}

impl Peer {
    /// What the user sees now.
    pub fn view(&self) -> PeerView {
        let chats = self
            .chats
            .iter()
            .map(|(nick, chat)| ChatView {
                nick: nick.clone(),
                state: chat.state.clone(),
                fingerprint: self.chat_fingerprint(nick),
                unread: self.unread(nick),
            })
            .collect();
        let requests = self
            .decisions
            .iter()
            .filter_map(|(&request, conn)| match &self.conns.get(conn)?.stage {
                Stage::AwaitUser { hello, .. } => Some(RequestView {
                    request,
                    nick: hello.hello.certificate.nick.clone(),
                    fingerprint: hello.hello.certificate.rsa.fingerprint(),
                }),
                _ => None,
            })
            .collect();
        PeerView {
            nick: self.identity.nick.clone(),
            onion: self.identity.address(),
            fingerprint: self.identity.rsa.public().fingerprint(),
            registry: self.registry.view(),
            contacts: self.contacts(),
            chats,
            requests,
            queued: self.state.outbox.values().map(|q| q.len()).sum(),
            now: self.now,
        }
    }

    /// The user has read what arrived from `nick` (it was shown, or its conversation
    /// opened): stored, so that it is not shown as new again after a restart.
    pub fn mark_read(&mut self, nick: &Nick) {
        if let Some(c) = self.state.contacts.get(nick)
            && c.unread > 0
        {
            let mut record = c.clone();
            record.unread = 0;
            self.store(StoreOp::Contact(record));
        }
    }

    /// Messages from `nick` not read yet.
    pub(super) fn unread(&self, nick: &Nick) -> usize {
        self.state
            .contacts
            .get(nick)
            .map_or(0, |c| c.unread as usize)
    }
}
