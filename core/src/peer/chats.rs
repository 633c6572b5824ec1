//! Chat commands and lifecycle: connect, accept, deny, send, close, retry, end.

use super::durable::{ContactKey, QueuedMessage, StoreOp};
use super::{Chat, ChatFailure, ChatState, CloseReason, CommandError, Peer};
use crate::handshake::{ExpectedPeer, HandshakeError};
use crate::nick::Nick;
use crate::peer::connection::Stage;
use crate::peer::registry_link::Pending;
use crate::peer_wire::{ChannelMessage, MAX_MESSAGE_LEN, RejectReason};
use crate::registry::UserRecord;
use crate::time::Instant;

impl Peer {
    /// Opens a chat with `nick`. A contact is dialled at its pinned onion address; anyone
    /// else is looked up at the registry first, and the verified record's key is pinned
    /// (trust on first use). Progress arrives as [`super::Event::ChatState`]. If `nick` is
    /// asking to chat with us right now, this accepts that request instead.
    pub fn connect(&mut self, now: Instant, nick: &Nick) -> Result<(), CommandError> {
        self.now = now;
        self.check_can_write(nick)?;
        if let Some(chat) = self.chats.get(nick) {
            return match chat.state {
                ChatState::Retrying { .. } => self.retry_now(now, nick),
                _ => Err(CommandError::ChatExists(nick.clone())),
            };
        }
        let pending = self.decisions.iter().find_map(|(r, conn)| {
            let c = self.conns.get(conn)?;
            (c.nick.as_ref() == Some(nick)).then_some(*r)
        });
        if let Some(request) = pending {
            return self.accept(now, request);
        }
        if self.chats.len() >= self.config.max_chats {
            return Err(CommandError::TooManyChats(self.config.max_chats));
        }
        self.check_room_for_contact(nick)?;
        self.ensure_contact(nick);
        self.open_chat(nick);
        Ok(())
    }

    /// `nick` is a contact already, or there is room for one more.
    pub(super) fn check_room_for_contact(&self, nick: &Nick) -> Result<(), CommandError> {
        if !self.state.contacts.contains_key(nick)
            && self.state.contacts.len() >= self.config.max_contacts
        {
            return Err(CommandError::TooManyContacts(self.config.max_contacts));
        }
        Ok(())
    }

    /// Why we cannot write to (or reach out to) `nick` now, if so. A key conflict stops
    /// nothing: we dial and authenticate only the key we expect, so a key presented by
    /// someone else gains them nothing.
    pub(super) fn check_can_write(&self, nick: &Nick) -> Result<(), CommandError> {
        if self.shutdown.is_some() || self.done {
            return Err(CommandError::ShuttingDown);
        }
        if *nick == self.identity.nick {
            return Err(CommandError::OwnNick);
        }
        if self.state.contacts.get(nick).is_some_and(|c| c.blocked) {
            return Err(CommandError::Blocked(nick.clone()));
        }
        Ok(())
    }

    /// Accepts the connection request `request` (from [`super::Event::ConnectionRequest`]).
    pub fn accept(&mut self, now: Instant, request: u64) -> Result<(), CommandError> {
        self.now = now;
        let conn = self
            .decisions
            .remove(&request)
            .ok_or(CommandError::NoRequest(request))?;
        let Some(c) = self.conns.get_mut(&conn) else {
            return Err(CommandError::NoRequest(request));
        };
        let Stage::AwaitUser {
            cipher,
            peer_instance,
            hello,
            ..
        } = std::mem::replace(&mut c.stage, Stage::AwaitHello)
        else {
            return Err(CommandError::NoRequest(request));
        };
        let nick = hello.hello.certificate.nick.clone();
        if !self.chats.contains_key(&nick) && self.chats.len() >= self.config.max_chats {
            self.drop_conn(conn);
            return Err(CommandError::TooManyChats(self.config.max_chats));
        }
        self.accept_connection(conn, cipher, peer_instance, &hello);
        Ok(())
    }

    /// Denies the connection request `request`; the initiator sees `reason`.
    pub fn deny(&mut self, now: Instant, request: u64, reason: &str) -> Result<(), CommandError> {
        self.now = now;
        let conn = self
            .decisions
            .remove(&request)
            .ok_or(CommandError::NoRequest(request))?;
        if let Some(c) = self.conns.get_mut(&conn)
            && let Stage::AwaitUser { cipher, .. } = &mut c.stage
            && let Ok(frame) = cipher.seal(&ChannelMessage::Deny {
                reason: crate::peer_wire::clip_reason(reason),
            })
        {
            self.transmit(conn, frame);
        }
        self.drop_conn(conn);
        Ok(())
    }

    /// Sends `text` to `nick`, online or not: the message is stored in the outbox first,
    /// then sent whenever a connection with `nick` exists (one is opened if none is).
    /// Returns its id; [`super::Event::Sent`], then [`super::Event::Delivered`] (or
    /// [`super::Event::Failed`], with why) follow. A message leaves the outbox only when
    /// acknowledged, cancelled, refused by the contact's user, or expired.
    pub fn send(&mut self, now: Instant, nick: &Nick, text: &str) -> Result<u64, CommandError> {
        self.now = now;
        if text.len() > MAX_MESSAGE_LEN {
            return Err(CommandError::MessageTooLong {
                len: text.len(),
                max: MAX_MESSAGE_LEN,
            });
        }
        self.check_can_write(nick)?;
        let max_unacked = self.config.max_unacked;
        if self.state.queued_len(nick) >= max_unacked {
            return Err(CommandError::OutboxFull(nick.clone(), max_unacked));
        }
        self.check_room_for_contact(nick)?;
        self.ensure_contact(nick);
        let id = self.state.contacts.get(nick).map_or(1, |c| c.next_id);
        let queued_at = self.wall_time(now);
        let nonce = self.fresh_nonce();
        self.store(StoreOp::Queued(QueuedMessage {
            to: nick.clone(),
            id,
            nonce,
            text: text.to_owned(),
            queued_at,
        }));
        if self.chats.contains_key(nick) {
            self.flush_outbox(nick);
        } else {
            self.deliver_now(nick);
        }
        Ok(id)
    }

    /// Closes the chat with `nick`: a `Close`/`CloseAck` exchange when connected, at once
    /// otherwise. [`super::Event::ChatClosed`] follows. Messages still queued for `nick`
    /// stay queued.
    pub fn close_chat(
        &mut self,
        now: Instant,
        nick: &Nick,
        reason: &str,
    ) -> Result<(), CommandError> {
        self.now = now;
        let grace = self.config.handshake_timeout;
        let chat = self
            .chats
            .get_mut(nick)
            .ok_or_else(|| CommandError::NoChat(nick.clone()))?;
        if chat.closing.is_some() {
            return Ok(());
        }
        let reason = crate::peer_wire::clip_reason(reason);
        chat.closing = Some(CloseReason::ByUs(reason.clone()));
        if chat.state == ChatState::Connected {
            chat.close_deadline = Some(now + grace);
            self.set_state(nick, ChatState::Closing);
            self.send_close(nick, reason);
        } else {
            if let Some(conn) = chat.conn {
                self.drop_conn(conn);
            }
            self.end_chat(nick, CloseReason::ByUs(reason));
        }
        Ok(())
    }

    /// Tries `nick` now: a chat waiting to reconnect, or a contact with queued messages
    /// waiting for its next delivery attempt.
    pub fn retry_now(&mut self, now: Instant, nick: &Nick) -> Result<(), CommandError> {
        self.now = now;
        match self.chats.get(nick).map(|c| &c.state) {
            Some(ChatState::Retrying { .. }) => {
                self.begin_attempt(nick);
                Ok(())
            }
            Some(_) => Ok(()),
            None if self.state.queued_len(nick) > 0 => {
                self.check_can_write(nick)?;
                self.deliver_now(nick);
                Ok(())
            }
            None => Err(CommandError::NoChat(nick.clone())),
        }
    }

    pub(super) fn send_close(&mut self, nick: &Nick, reason: String) {
        if let Some(conn) = self.chats.get(nick).and_then(|c| c.conn) {
            self.seal_on(conn, &ChannelMessage::Close { reason });
        }
    }

    /// Creates the chat with `nick` (a contact) and starts its first attempt.
    pub(super) fn open_chat(&mut self, nick: &Nick) {
        debug_assert!(self.state.contacts.contains_key(nick));
        if self.chats.contains_key(nick) {
            return;
        }
        self.chats.insert(
            nick.clone(),
            Chat {
                state: ChatState::LookingUp,
                conn: None,
                attempt: 0,
                last_failure: String::new(),
                closing: None,
                close_deadline: None,
            },
        );
        self.begin_attempt(nick);
    }

    /// Creates the chat for an accepted inbound connection (no attempt: it is connected).
    pub(super) fn ensure_chat(&mut self, nick: &Nick) {
        if !self.chats.contains_key(nick) {
            self.chats.insert(
                nick.clone(),
                Chat {
                    state: ChatState::Connecting,
                    conn: None,
                    attempt: 0,
                    last_failure: String::new(),
                    closing: None,
                    close_deadline: None,
                },
            );
        }
    }

    /// Starts one connection attempt: a contact whose key is pinned is dialled directly;
    /// anyone else is looked up at the registry first.
    pub(super) fn begin_attempt(&mut self, nick: &Nick) {
        let pinned = self
            .state
            .contacts
            .get(nick)
            .is_some_and(|c| matches!(c.key, ContactKey::Pinned { .. }));
        if pinned {
            self.set_state(nick, ChatState::Connecting);
            self.pump_dials();
        } else {
            self.set_state(nick, ChatState::LookingUp);
            self.lookup(nick, Pending::Connect(nick.clone()));
        }
    }

    pub(super) fn connect_lookup_answered(&mut self, nick: &Nick, record: Option<UserRecord>) {
        if !self
            .chats
            .get(nick)
            .is_some_and(|c| c.state == ChatState::LookingUp)
        {
            return;
        }
        let Some(record) = record else {
            return self.end_chat(
                nick,
                CloseReason::Failed(ChatFailure::NotOnline(nick.clone())),
            );
        };
        if record.certificate.nick != *nick {
            let failure = ChatFailure::BadRecord {
                nick: nick.clone(),
                why: "the nick asked for",
            };
            return self.end_chat(nick, CloseReason::Failed(failure));
        }
        let expected = self.state.contacts.get(nick).map(|c| c.key.clone());
        if let Some(ContactKey::Fingerprint(fingerprint)) = expected
            && fingerprint != record.certificate.rsa.fingerprint()
        {
            // The registry's word is no proof (nobody showed it holds that key): the
            // attempt fails, and no conflict is recorded. Deliveries are tried again later.
            let failure = ChatFailure::BadRecord {
                nick: nick.clone(),
                why: "the key you pinned",
            };
            return self.end_chat(nick, CloseReason::Failed(failure));
        }
        self.pin(nick, record.certificate, record.port);
        self.set_state(nick, ChatState::Connecting);
        self.pump_dials();
    }

    /// One attempt failed: schedule the next with backoff, or give up.
    pub(super) fn attempt_failed(&mut self, nick: &Nick, reason: String) {
        let max = self.config.backoff.max_attempts;
        let jitter = self.jitter();
        let now = self.now;
        let Some(chat) = self.chats.get_mut(nick) else {
            return;
        };
        if chat.closing.is_some() {
            let reason = chat
                .closing
                .clone()
                .unwrap_or(CloseReason::ByUs(String::new()));
            return self.end_chat(nick, reason);
        }
        chat.conn = None;
        chat.attempt += 1;
        chat.last_failure = reason;
        // A port the registry suggested did not work out: back to the pinned one.
        if let Some(status) = self.status.get_mut(nick)
            && status.port_hint.take().is_some()
        {
            status.hint_failed = true;
        }
        if chat.attempt > max {
            let failure = ChatFailure::Unreachable {
                attempts: chat.attempt,
                last: chat.last_failure.clone(),
            };
            return self.end_chat(nick, CloseReason::Failed(failure));
        }
        let at = now + self.config.backoff.delay(chat.attempt, jitter);
        let attempt = chat.attempt;
        self.set_state(nick, ChatState::Retrying { at, attempt });
    }

    pub(super) fn chat_timeouts(&mut self) {
        let now = self.now;
        let due: Vec<(Nick, bool)> = self
            .chats
            .iter()
            .filter_map(|(n, c)| match c.state {
                ChatState::Retrying { at, .. } if at <= now => Some((n.clone(), true)),
                _ if c.close_deadline.is_some_and(|t| t <= now) => Some((n.clone(), false)),
                _ => None,
            })
            .collect();
        for (nick, retry) in due {
            if retry {
                self.begin_attempt(&nick);
            } else {
                let reason = self
                    .chats
                    .get(&nick)
                    .and_then(|c| c.closing.clone())
                    .unwrap_or(CloseReason::ByUs(String::new()));
                if let Some(conn) = self.chats.get(&nick).and_then(|c| c.conn) {
                    self.drop_conn(conn);
                }
                self.end_chat(&nick, reason);
            }
        }
    }

    /// Sends queued messages if the chat's connection is established.
    pub(super) fn flush_outbox(&mut self, nick: &Nick) {
        let Some(chat) = self.chats.get(nick) else {
            return;
        };
        // Nothing more on a chat that is closing (either side asked): what is written
        // meanwhile waits in the outbox for the next chat.
        if chat.state != ChatState::Connected {
            return;
        }
        let Some(conn) = chat.conn else { return };
        for (id, nonce, text) in self.take_untransmitted(nick) {
            if !self.seal_on(conn, &ChannelMessage::Message { id, nonce, text }) {
                return;
            }
        }
    }

    pub(super) fn set_state(&mut self, nick: &Nick, state: ChatState) {
        if let Some(chat) = self.chats.get_mut(nick)
            && chat.state != state
        {
            chat.state = state.clone();
            self.emit(super::Event::ChatState {
                nick: nick.clone(),
                state,
            });
        }
    }

    /// Removes the chat and reports why it ended. Queued messages stay queued (and are
    /// tried again later), unless the contact's user refused the chat.
    pub(super) fn end_chat(&mut self, nick: &Nick, reason: CloseReason) {
        let Some(mut chat) = self.chats.remove(nick) else {
            return;
        };
        if let Some(conn) = chat.conn.take() {
            self.drop_conn(conn);
        }
        if let Some(m) = self.mailboxes.get_mut(nick) {
            m.connection_lost();
        }
        // The contact's user said no: waiting would not change that.
        match &reason {
            CloseReason::Denied(why) => {
                self.fail_queued(nick, &format!("{nick} refused the chat: {why}"));
            }
            CloseReason::Failed(ChatFailure::Handshake(HandshakeError::Rejected(
                RejectReason::Refused,
            ))) => self.fail_queued(nick, &format!("{nick} does not accept chats from you")),
            _ => {}
        }
        self.emit(super::Event::ChatClosed {
            nick: nick.clone(),
            reason: reason.clone(),
        });
        let shutting_down = self.shutdown.is_some() || self.done;
        if self.state.queued_len(nick) > 0 && !shutting_down {
            self.schedule_delivery(nick);
        } else if matches!(
            reason,
            CloseReason::Failed(ChatFailure::NotOnline(_) | ChatFailure::BadRecord { .. })
        ) {
            self.forget_if_unknown(nick);
        }
        self.maybe_finish_shutdown();
    }

    /// The expected peer of a chat: the contact's pinned key and address.
    pub(super) fn expected_peer(&self, nick: &Nick) -> Option<(ExpectedPeer, u16)> {
        match &self.state.contacts.get(nick)?.key {
            ContactKey::Pinned { certificate, port } => Some((
                ExpectedPeer {
                    nick: nick.clone(),
                    onion: certificate.onion,
                    rsa: certificate.rsa.clone(),
                },
                self.status
                    .get(nick)
                    .and_then(|s| s.port_hint)
                    .unwrap_or(*port),
            )),
            _ => None,
        }
    }
}
