//! Chat commands and lifecycle: connect, accept, deny, send, close, retry, end.

use super::{Chat, ChatFailure, ChatState, CloseReason, CommandError, Event, Mailbox, Peer};
use crate::handshake::ExpectedPeer;
use crate::nick::Nick;
use crate::peer::connection::Stage;
use crate::peer::registry_link::Pending;
use crate::peer_wire::{MAX_MESSAGE_LEN, SessionMessage};
use crate::registry::UserRecord;
use crate::time::Instant;

impl Peer {
    /// Opens a chat with `nick`: looks up its record, dials it through the runtime, and
    /// authenticates it. Progress arrives as [`Event::ChatState`]. If `nick` is asking to
    /// chat with us right now, this accepts that request instead.
    pub fn connect(&mut self, now: Instant, nick: &Nick) -> Result<(), CommandError> {
        self.now = now;
        if self.shutdown.is_some() || self.done {
            return Err(CommandError::ShuttingDown);
        }
        if *nick == self.identity.nick {
            return Err(CommandError::OwnNick);
        }
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
        self.ensure_chat(nick, None, 0);
        self.begin_attempt(nick);
        Ok(())
    }

    /// Accepts the connection request `request` (from [`Event::ConnectionRequest`]).
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
            && let Ok(frame) = cipher.seal(&SessionMessage::Deny {
                reason: crate::peer_wire::clip_reason(reason),
            })
        {
            self.transmit(conn, frame);
        }
        self.drop_conn(conn);
        Ok(())
    }

    /// Sends `text` to `nick`. Returns the message id; [`Event::Delivered`] or
    /// [`Event::Failed`] follows for it. Messages sent while the chat is connecting or
    /// retrying are queued and sent once it connects.
    pub fn send(&mut self, now: Instant, nick: &Nick, text: &str) -> Result<u64, CommandError> {
        self.now = now;
        if text.len() > MAX_MESSAGE_LEN {
            return Err(CommandError::MessageTooLong {
                len: text.len(),
                max: MAX_MESSAGE_LEN,
            });
        }
        let max_unacked = self.config.max_unacked;
        let chat = self
            .chats
            .get_mut(nick)
            .ok_or_else(|| CommandError::NoChat(nick.clone()))?;
        if chat.closing.is_some() {
            return Err(CommandError::Closing(nick.clone()));
        }
        if chat.mailbox.unacked_len() >= max_unacked {
            return Err(CommandError::OutboxFull(nick.clone(), max_unacked));
        }
        let id = chat.mailbox.push(text.to_owned());
        self.flush_outbox(nick);
        Ok(id)
    }

    /// Closes the chat with `nick`: a `Close`/`CloseAck` exchange when connected, at once
    /// otherwise. [`Event::ChatClosed`] follows.
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

    /// Retries a chat that is waiting to reconnect, now instead of at its backoff time.
    pub fn retry_now(&mut self, now: Instant, nick: &Nick) -> Result<(), CommandError> {
        self.now = now;
        let chat = self
            .chats
            .get(nick)
            .ok_or_else(|| CommandError::NoChat(nick.clone()))?;
        if matches!(chat.state, ChatState::Retrying { .. }) {
            self.begin_attempt(nick);
        }
        Ok(())
    }

    pub(super) fn send_close(&mut self, nick: &Nick, reason: String) {
        if let Some(conn) = self.chats.get(nick).and_then(|c| c.conn) {
            self.seal_on(conn, &SessionMessage::Close { reason });
        }
    }

    /// Creates the chat if it does not exist; fills in the peer once it is known.
    pub(super) fn ensure_chat(&mut self, nick: &Nick, peer: Option<ExpectedPeer>, port: u16) {
        if !self.chats.contains_key(nick) {
            let instance = self.fresh_u64();
            self.chats.insert(
                nick.clone(),
                Chat {
                    peer: None,
                    port: 0,
                    state: ChatState::LookingUp,
                    conn: None,
                    mailbox: Mailbox::new(instance),
                    attempt: 0,
                    last_failure: String::new(),
                    closing: None,
                    close_deadline: None,
                },
            );
        }
        if let (Some(chat), Some(peer)) = (self.chats.get_mut(nick), peer) {
            chat.peer = Some(peer);
            chat.port = port;
        }
    }

    /// Starts one connection attempt: a fresh registry lookup, then a dial.
    fn begin_attempt(&mut self, nick: &Nick) {
        let Some(chat) = self.chats.get(nick) else {
            return;
        };
        // A chat that knows its peer (pinned, or seen before) dials directly; the registry
        // is asked only for where a new peer is.
        if chat.peer.is_some() {
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
        if let Some(pinned) = self.config.pinned.get(nick)
            && *pinned != record.certificate.rsa.fingerprint()
        {
            let failure = ChatFailure::BadRecord {
                nick: nick.clone(),
                why: "the pinned key",
            };
            return self.end_chat(nick, CloseReason::Failed(failure));
        }
        let peer = ExpectedPeer {
            nick: nick.clone(),
            onion: record.certificate.onion,
            rsa: record.certificate.rsa.clone(),
        };
        self.ensure_chat(nick, Some(peer), record.port);
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
        let Some(chat) = self.chats.get_mut(nick) else {
            return;
        };
        if chat.state != ChatState::Connected && chat.state != ChatState::Closing {
            return;
        }
        let Some(conn) = chat.conn else { return };
        for (id, text) in chat.mailbox.take_untransmitted() {
            if !self.seal_on(conn, &SessionMessage::Message { id, text }) {
                return;
            }
        }
    }

    pub(super) fn set_state(&mut self, nick: &Nick, state: ChatState) {
        if let Some(chat) = self.chats.get_mut(nick)
            && chat.state != state
        {
            chat.state = state.clone();
            self.emit(Event::ChatState {
                nick: nick.clone(),
                state,
            });
        }
    }

    /// Removes the chat, failing every message not acknowledged, and reports why it ended.
    pub(super) fn end_chat(&mut self, nick: &Nick, reason: CloseReason) {
        let Some(mut chat) = self.chats.remove(nick) else {
            return;
        };
        if let Some(conn) = chat.conn.take() {
            self.drop_conn(conn);
        }
        let why = match &reason {
            CloseReason::ByUs(_) | CloseReason::ByPeer(_) => {
                "the chat was closed before the peer acknowledged it".to_owned()
            }
            CloseReason::Denied(r) => format!("the peer denied the chat: {r}"),
            CloseReason::Failed(f) => f.to_string(),
        };
        for id in chat.mailbox.fail_all() {
            self.emit(Event::Failed {
                nick: nick.clone(),
                id,
                reason: why.clone(),
            });
        }
        self.emit(Event::ChatClosed {
            nick: nick.clone(),
            reason,
        });
        self.maybe_finish_shutdown();
    }
}
