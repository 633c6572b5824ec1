//! Chat connections: the handshake on each side, sealed frames, keep-alives.

use super::{ChatFailure, ChatState, CloseReason, ConnectionLost, Event, Input, Output, Peer};
use crate::channel::ChannelCipher;
use crate::conn::ConnId;
use crate::frame::{FrameDecoder, decode_body, encode_frame};
use crate::handshake::{
    Established, ExpectedPeer, HandshakeError, Initiator, Responder, VerifiedHello,
};
use crate::peer::AcceptPolicy;
use crate::peer::durable::{ContactKey, StoreOp};
use crate::peer::lookups::LookupPlan;
use crate::peer::mailbox::Receipt;
use crate::peer::registry_link::Pending;
use crate::peer_wire::{
    ChannelMessage, MAX_MESSAGE_ID, MAX_MESSAGE_LEN, PeerFrame, RejectReason, clip_reason,
};
use crate::registry::UserRecord;
use crate::time::Instant;

/// Where a connection is in its life.
#[derive(Debug)]
pub(super) enum Stage {
    /// Outbound, waiting for the transport.
    Dialing(ExpectedPeer),
    /// Outbound, `Hello` sent.
    AwaitChallenge(Initiator),
    /// Outbound, `Finish` sent; waiting for the peer's user.
    AwaitDecision(ChannelCipher),
    /// Inbound, nothing received yet.
    AwaitHello,
    /// Inbound, `Challenge` sent.
    AwaitFinish(Responder, Box<VerifiedHello>),
    /// Inbound, authenticated, waiting for the registry record of the claimed nick.
    AwaitLookup {
        established: Established,
        hello: Box<VerifiedHello>,
    },
    /// Inbound, authenticated, waiting for our user's decision.
    AwaitUser {
        request: u64,
        cipher: ChannelCipher,
        peer_instance: u64,
        hello: Box<VerifiedHello>,
    },
    /// Messages flow.
    Established(ChannelCipher),
}

/// One peer connection.
#[derive(Debug)]
pub(super) struct Conn {
    decoder: FrameDecoder,
    pub(super) outbound: bool,
    pub(super) stage: Stage,
    /// Give up (dial, handshake, decision or idle timeout) at this instant.
    deadline: Instant,
    keepalive_at: Option<Instant>,
    /// The chat this connection serves, once known.
    pub(super) nick: Option<crate::nick::Nick>,
    /// Messages arrived that are not yet acknowledged.
    ack_due: bool,
    /// The port we dialled (outbound only).
    dialled_port: Option<u16>,
}

impl Conn {
    pub(super) fn inbound(deadline: Instant) -> Self {
        Self {
            decoder: FrameDecoder::new(),
            outbound: false,
            stage: Stage::AwaitHello,
            deadline,
            keepalive_at: None,
            nick: None,
            ack_due: false,
            dialled_port: None,
        }
    }

    pub(super) fn outbound(expected: ExpectedPeer, port: u16, deadline: Instant) -> Self {
        Self {
            decoder: FrameDecoder::new(),
            outbound: true,
            nick: Some(expected.nick.clone()),
            stage: Stage::Dialing(expected),
            deadline,
            keepalive_at: None,
            ack_due: false,
            dialled_port: Some(port),
        }
    }

    pub(super) fn is_pending_inbound(&self) -> bool {
        !self.outbound && !matches!(self.stage, Stage::Established(_))
    }

    /// Inbound, and the peer has not proved who it is yet.
    pub(super) fn is_unauthenticated_inbound(&self) -> bool {
        !self.outbound && matches!(self.stage, Stage::AwaitHello | Stage::AwaitFinish(..))
    }

    pub(super) fn is_dialing(&self) -> bool {
        self.outbound && matches!(self.stage, Stage::Dialing(_) | Stage::AwaitChallenge(_))
    }

    pub(super) fn next_timer(&self) -> Option<Instant> {
        Some(match self.keepalive_at {
            Some(k) => k.min(self.deadline),
            None => self.deadline,
        })
    }
}

impl Peer {
    pub(super) fn connection_input(&mut self, input: Input<'_>) {
        match input {
            Input::Connected { conn } => self.connected(conn),
            Input::ConnectFailed { conn, reason } => {
                self.conn_lost(conn, ConnectionLost::ConnectFailed(reason), false)
            }
            Input::Closed { conn } => self.conn_lost(conn, ConnectionLost::Closed, false),
            Input::Received { conn, bytes } => {
                self.receive(conn, bytes);
                self.flush_ack(conn);
            }
        }
    }

    /// Handles every whole frame in `bytes`.
    fn receive(&mut self, conn: ConnId, mut bytes: &[u8]) {
        loop {
            let Some(c) = self.conns.get_mut(&conn) else {
                return;
            };
            let body = match c.decoder.decode(&mut bytes) {
                Ok(Some(body)) => body,
                Ok(None) => return,
                Err(e) => return self.conn_lost(conn, ConnectionLost::Frame(e), true),
            };
            match decode_body::<PeerFrame>(&body) {
                Ok(frame) => self.frame(conn, body, frame),
                Err(e) => return self.conn_lost(conn, ConnectionLost::Frame(e), true),
            }
        }
    }

    /// One cumulative acknowledgement for every message that arrived in one read.
    fn flush_ack(&mut self, conn: ConnId) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        if !core::mem::take(&mut c.ack_due) {
            return;
        }
        let Some(nick) = c.nick.clone() else { return };
        let upto = self.received_upto(&nick);
        self.seal_on(conn, &ChannelMessage::Ack { id: upto });
    }

    fn connected(&mut self, conn: ConnId) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        let Stage::Dialing(expected) = &c.stage else {
            return;
        };
        let expected = expected.clone();
        let Some(nick) = c.nick.clone() else { return };
        let instance = match self.state.contacts.get(&nick) {
            Some(contact) if self.chats.contains_key(&nick) => contact.our_instance,
            _ => return self.drop_conn(conn),
        };
        match Initiator::start(
            &mut self.rng,
            &self.identity,
            self.config.port,
            instance,
            expected,
        ) {
            Ok((initiator, hello)) => {
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.stage = Stage::AwaitChallenge(initiator);
                    c.deadline = self.now + self.config.handshake_timeout;
                }
                self.transmit(conn, hello);
            }
            Err(_) => self.conn_lost(
                conn,
                ConnectionLost::Protocol("could not encode hello"),
                true,
            ),
        }
    }

    fn frame(&mut self, conn: ConnId, body: Vec<u8>, frame: PeerFrame) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        // Any frame proves the connection alive.
        if matches!(c.stage, Stage::Established(_)) {
            c.deadline = self.now + self.config.idle_timeout;
        }
        let stage = std::mem::replace(&mut c.stage, Stage::AwaitHello);
        match (stage, frame) {
            (Stage::AwaitHello, PeerFrame::Hello(hello)) => self.on_hello(conn, body, hello),
            (Stage::AwaitFinish(responder, hello), PeerFrame::Finish(finish)) => {
                self.on_finish(conn, responder, *hello, &finish)
            }
            (Stage::AwaitChallenge(initiator), PeerFrame::Challenge(challenge)) => {
                match initiator.on_challenge(&mut self.rng, &self.identity, &challenge) {
                    Ok((finish, cipher)) => {
                        self.set_stage(conn, Stage::AwaitDecision(cipher));
                        // The peer's user may take as long as their decision timeout.
                        let wait = self.config.decision_timeout + self.config.handshake_timeout;
                        if let Some(c) = self.conns.get_mut(&conn) {
                            c.deadline = self.now + wait;
                        }
                        self.transmit(conn, finish);
                        if let Some(nick) = self.conn_nick(conn) {
                            // Their key answered at the port we dialled: it is theirs.
                            if let Some(port) = self.conns.get(&conn).and_then(|c| c.dialled_port) {
                                self.port_proven(&nick, port);
                            }
                            self.set_state(&nick, ChatState::AwaitingAcceptance);
                        }
                    }
                    Err(e) => self.handshake_failed(conn, e),
                }
            }
            // The responder refuses before its Challenge (a wrong nick, a busy peer) or,
            // having checked our Finish, after it (a bad proof, a key it refuses).
            (Stage::AwaitChallenge(_) | Stage::AwaitDecision(..), PeerFrame::Reject(reason)) => {
                self.handshake_failed(conn, HandshakeError::Rejected(reason))
            }
            (Stage::AwaitDecision(mut cipher), PeerFrame::Sealed(sealed)) => {
                match cipher.open(&sealed) {
                    Ok(ChannelMessage::Accept {
                        instance: peer_instance,
                    }) => {
                        self.set_stage(conn, Stage::Established(cipher));
                        self.chat_connected(conn, peer_instance);
                    }
                    Ok(ChannelMessage::Deny { reason }) => {
                        let nick = self.conn_nick(conn);
                        self.drop_conn(conn);
                        if let Some(nick) = nick {
                            self.end_chat(&nick, CloseReason::Denied(clip_reason(&reason)));
                        }
                    }
                    Ok(_) => self.conn_lost(
                        conn,
                        ConnectionLost::Protocol("message before acceptance"),
                        true,
                    ),
                    Err(e) => self.conn_lost(conn, ConnectionLost::Channel(e), true),
                }
            }
            (Stage::Established(mut cipher), PeerFrame::Sealed(sealed)) => {
                match cipher.open(&sealed) {
                    Ok(message) => {
                        self.set_stage(conn, Stage::Established(cipher));
                        self.channel_message(conn, message);
                    }
                    Err(e) => self.conn_lost(conn, ConnectionLost::Channel(e), true),
                }
            }
            (_, _) => self.conn_lost(conn, ConnectionLost::Protocol("unexpected frame"), true),
        }
    }

    fn set_stage(&mut self, conn: ConnId, stage: Stage) {
        if let Some(c) = self.conns.get_mut(&conn) {
            c.stage = stage;
        }
    }

    fn conn_nick(&self, conn: ConnId) -> Option<crate::nick::Nick> {
        self.conns.get(&conn).and_then(|c| c.nick.clone())
    }

    /// A `Hello`: answered with a signed `Challenge` if it is addressed to us, its
    /// certificate verifies and the signing budget allows, whoever it claims to be. Who the
    /// claimed nick is to us (contact, stranger, blocked) is looked at only once the
    /// initiator proved its key ([`Peer::authenticated`]): before that, every nick gets the
    /// same answers, so a prober learns nothing of our contacts and cannot record a key
    /// conflict on its word.
    fn on_hello(&mut self, conn: ConnId, body: Vec<u8>, hello: crate::peer_wire::Hello) {
        if self.shutdown.is_some() {
            return self.reject(conn, RejectReason::ShuttingDown, None);
        }
        let hello = match VerifiedHello::check(&self.identity, body, hello) {
            Ok(h) => h,
            Err(HandshakeError::Rejected(reason)) => return self.reject(conn, reason, None),
            Err(e) => return self.reject(conn, RejectReason::BadProof, Some((None, e))),
        };
        let nick = hello.hello.certificate.nick.clone();
        if nick == self.identity.nick {
            return self.reject(conn, RejectReason::ProtocolViolation, None);
        }
        if !self.challenges.allow(self.now, &nick) {
            return self.reject(conn, RejectReason::Busy, None);
        }
        if let Some(c) = self.conns.get_mut(&conn) {
            c.nick = Some(nick.clone());
            c.deadline = self.now + self.config.handshake_timeout;
        }
        match Responder::respond(&mut self.rng, &self.identity, &hello) {
            Ok((responder, challenge)) => {
                self.set_stage(conn, Stage::AwaitFinish(responder, Box::new(hello)));
                self.transmit(conn, challenge);
            }
            Err(e) => self.reject(conn, RejectReason::BadProof, Some((Some(nick), e))),
        }
    }

    fn on_finish(
        &mut self,
        conn: ConnId,
        responder: Responder,
        hello: VerifiedHello,
        finish: &crate::peer_wire::Finish,
    ) {
        let nick = hello.hello.certificate.nick.clone();
        match responder.on_finish(&mut self.rng, &self.identity, finish) {
            Ok(est) => self.authenticated(conn, est, hello),
            Err(e) => self.reject(conn, RejectReason::BadProof, Some((Some(nick), e))),
        }
    }

    /// The initiator proved it holds the key it presented: now its claim is checked
    /// against what we know of the nick, in this order — a pinned key (a different one is
    /// a key conflict, recorded because it is proven), a block, our limits, and for a
    /// stranger the registry's record.
    fn authenticated(&mut self, conn: ConnId, est: Established, hello: VerifiedHello) {
        if self.shutdown.is_some() {
            return self.reject(conn, RejectReason::ShuttingDown, None);
        }
        let presented = hello.hello.certificate.clone();
        let nick = presented.nick.clone();
        let contact = self.state.contacts.get(&nick);
        let blocked = contact.is_some_and(|c| c.blocked);
        // Whether we know the key to expect (pinned, or given by the user): then it matched.
        let key_known = match contact.map(|c| c.key.clone()) {
            Some(ContactKey::Pinned { certificate, .. })
                if certificate.rsa == presented.rsa && certificate.onion == presented.onion =>
            {
                true
            }
            Some(ContactKey::Fingerprint(f)) if f == presented.rsa.fingerprint() => true,
            Some(key @ (ContactKey::Pinned { .. } | ContactKey::Fingerprint(_))) => {
                let pinned = key.fingerprint().unwrap_or(presented.rsa.fingerprint());
                self.key_conflict(&nick, pinned, presented.clone(), hello.hello.port);
                let e = HandshakeError::Impersonation {
                    nick: nick.clone(),
                    expected: pinned,
                    presented: presented.rsa.fingerprint(),
                };
                return self.reject(conn, RejectReason::KeyMismatch, Some((Some(nick), e)));
            }
            Some(ContactKey::Unknown) | None => false,
        };
        if blocked {
            return self.reject(conn, RejectReason::Refused, None);
        }
        let chat = self.chats.get(&nick);
        let new_contact = contact.is_none();
        if chat.is_none() && self.chats.len() >= self.config.max_chats
            || new_contact && self.state.contacts.len() >= self.config.max_contacts
        {
            return self.reject(conn, RejectReason::Busy, None);
        }
        // Simultaneous dials: the connection dialed by the smaller onion address wins.
        let ours_wins = self.identity.address() < presented.onion;
        let existing_is_ours = chat
            .and_then(|c| c.conn)
            .and_then(|e| self.conns.get(&e))
            .is_some_and(|e| e.outbound);
        if existing_is_ours && ours_wins {
            return self.reject(conn, RejectReason::Simultaneous, None);
        }
        if key_known {
            return self.decide(conn, est, hello);
        }
        // A stranger (or a contact whose key we never learnt): the registry must list
        // this key for the nick.
        self.set_stage(
            conn,
            Stage::AwaitLookup {
                established: est,
                hello: Box::new(hello),
            },
        );
        match self.inbound_lookups.plan(self.now, &nick, conn) {
            LookupPlan::Cached(record) => self.incoming_lookup_answered(conn, record),
            LookupPlan::Joined => {}
            LookupPlan::Send => self.lookup(&nick, Pending::Incoming(nick.clone())),
            LookupPlan::Refuse => self.reject(conn, RejectReason::Busy, None),
        }
    }

    pub(super) fn incoming_lookup_answered(&mut self, conn: ConnId, record: Option<UserRecord>) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        let Stage::AwaitLookup { established, hello } =
            std::mem::replace(&mut c.stage, Stage::AwaitHello)
        else {
            debug_assert!(
                false,
                "a lookup answered for a connection not waiting on one"
            );
            return;
        };
        let claimed = hello.hello.certificate.clone();
        let Some(record) = record else {
            return self.reject(conn, RejectReason::UnknownInitiator, None);
        };
        if record.certificate.rsa != claimed.rsa {
            let e = HandshakeError::Impersonation {
                nick: claimed.nick.clone(),
                expected: record.certificate.rsa.fingerprint(),
                presented: claimed.rsa.fingerprint(),
            };
            return self.reject(
                conn,
                RejectReason::KeyMismatch,
                Some((Some(claimed.nick), e)),
            );
        }
        if record.certificate.onion != claimed.onion {
            let e = HandshakeError::BadCertificate(
                "the registry lists another onion address for this nick",
            );
            return self.reject(
                conn,
                RejectReason::KeyMismatch,
                Some((Some(claimed.nick), e)),
            );
        }
        self.decide(conn, established, *hello);
    }

    pub(super) fn incoming_registry_unavailable(&mut self, conn: ConnId) {
        if self
            .conns
            .get(&conn)
            .is_some_and(|c| matches!(c.stage, Stage::AwaitLookup { .. }))
        {
            self.reject(conn, RejectReason::RegistryUnavailable, None);
        }
    }

    /// An authenticated initiator whose key is the one we expect: accept (a contact, an
    /// open chat, or the policy says so), deny, or ask the user.
    fn decide(&mut self, conn: ConnId, est: Established, hello: VerifiedHello) {
        let nick = hello.hello.certificate.nick.clone();
        let contact = self.state.contacts.get(&nick);
        if self.chats.contains_key(&nick) || contact.is_some_and(|c| !c.blocked) {
            // A contact (or an open chat) reconnecting: accept without asking again.
            return self.accept_connection(conn, est.cipher, est.peer_instance, &hello);
        }
        match self.config.accept_policy {
            AcceptPolicy::AcceptAll => {
                self.accept_connection(conn, est.cipher, est.peer_instance, &hello)
            }
            AcceptPolicy::DenyAll => {
                let mut cipher = est.cipher;
                if let Ok(frame) = cipher.seal(&ChannelMessage::Deny {
                    reason: "this user does not accept chats".into(),
                }) {
                    self.transmit(conn, frame);
                }
                self.drop_conn(conn);
            }
            AcceptPolicy::Ask => {
                // One pending request per nick: an older one from the same (authenticated)
                // peer is stale, its connection given up on.
                let stale: Vec<ConnId> = self
                    .conns
                    .iter()
                    .filter(|(id, c)| {
                        **id != conn
                            && matches!(c.stage, Stage::AwaitUser { .. })
                            && c.nick.as_ref() == Some(&nick)
                    })
                    .map(|(id, _)| *id)
                    .collect();
                for old in stale {
                    self.drop_conn(old);
                }
                let request = self.next_decision;
                self.next_decision += 1;
                self.decisions.insert(request, conn);
                let cert = hello.hello.certificate.clone();
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.deadline = self.now + self.config.decision_timeout;
                    c.stage = Stage::AwaitUser {
                        request,
                        cipher: est.cipher,
                        peer_instance: est.peer_instance,
                        hello: Box::new(hello),
                    };
                }
                self.emit(Event::ConnectionRequest {
                    request,
                    nick: cert.nick,
                    onion: cert.onion,
                    fingerprint: cert.rsa.fingerprint(),
                });
            }
        }
    }

    /// Makes an authenticated inbound connection the chat's connection and says `Accept`
    /// with the instance our ids towards the initiator are scoped to: the contact's, read
    /// now, so it is always the one the ids we send next belong to.
    pub(super) fn accept_connection(
        &mut self,
        conn: ConnId,
        mut cipher: ChannelCipher,
        peer_instance: u64,
        hello: &VerifiedHello,
    ) {
        let cert = hello.hello.certificate.clone();
        let nick = cert.nick.clone();
        self.ensure_contact(&nick);
        let Some(instance) = self.state.contacts.get(&nick).map(|c| c.our_instance) else {
            debug_assert!(false, "{nick} is a contact: ensure_contact made it one");
            return self.drop_conn(conn);
        };
        // Trust on first use: the key of a request we accept is pinned.
        self.pin(&nick, cert, hello.hello.port);
        self.ensure_chat(&nick);
        // The new connection replaces any other the chat had (the peer redialed, or won a
        // simultaneous dial). Attach it first, so dropping the old one does not look like
        // a chat without a connection (which would be redialed).
        let old = self.chats.get_mut(&nick).and_then(|c| c.conn.replace(conn));
        if let Some(old) = old
            && old != conn
        {
            self.drop_conn(old);
        }
        match cipher.seal(&ChannelMessage::Accept { instance }) {
            Ok(frame) => self.transmit(conn, frame),
            Err(e) => return self.conn_lost(conn, ConnectionLost::Channel(e), true),
        }
        if let Some(c) = self.conns.get_mut(&conn) {
            c.stage = Stage::Established(cipher);
            c.nick = Some(nick.clone());
        }
        if let Some(chat) = self.chats.get_mut(&nick) {
            chat.conn = Some(conn);
        }
        self.chat_connected(conn, peer_instance);
    }

    /// The chat's connection is established: reset backoff, resend what is unacknowledged.
    fn chat_connected(&mut self, conn: ConnId, peer_instance: u64) {
        let Some(nick) = self.conn_nick(conn) else {
            return;
        };
        let now = self.now;
        if let Some(c) = self.conns.get_mut(&conn) {
            c.deadline = now + self.config.idle_timeout;
            c.keepalive_at = Some(now + self.config.keepalive_interval);
        }
        let Some(chat) = self.chats.get_mut(&nick) else {
            return self.drop_conn(conn);
        };
        chat.conn = Some(conn);
        chat.attempt = 0;
        let closing = chat.closing.clone();
        self.mailboxes
            .entry(nick.clone())
            .or_default()
            .connection_lost();
        self.peer_instance(&nick, peer_instance);
        // Before any message: what we stored of theirs, so that a peer on an older copy of
        // its store learns its ids are taken before it counts on an acknowledgement.
        let (stored_upto, nonce) = self
            .state
            .contacts
            .get(&nick)
            .map_or((0, 0), |c| (c.received_upto, c.received_nonce));
        self.seal_on(conn, &ChannelMessage::Resume { stored_upto, nonce });
        self.delivery_succeeded(&nick);
        self.set_state(&nick, ChatState::Connected);
        self.flush_outbox(&nick);
        // A close requested while the connection was down goes out now.
        if let Some(CloseReason::ByUs(reason)) = closing {
            self.send_close(&nick, reason);
        }
        self.pump_dials();
    }

    /// Seals `message` on `conn` if it is established.
    pub(super) fn seal_on(&mut self, conn: ConnId, message: &ChannelMessage) -> bool {
        let now = self.now;
        let keepalive = self.config.keepalive_interval;
        let Some(c) = self.conns.get_mut(&conn) else {
            return false;
        };
        let Stage::Established(cipher) = &mut c.stage else {
            return false;
        };
        match cipher.seal(message) {
            Ok(frame) => {
                c.keepalive_at = Some(now + keepalive);
                self.transmit(conn, frame);
                true
            }
            Err(e) => {
                self.conn_lost(conn, ConnectionLost::Channel(e), true);
                false
            }
        }
    }

    fn channel_message(&mut self, conn: ConnId, message: ChannelMessage) {
        let Some(nick) = self.conn_nick(conn) else {
            return;
        };
        match message {
            ChannelMessage::Message { id, nonce, text } => {
                if text.len() > MAX_MESSAGE_LEN {
                    return self.conn_lost(
                        conn,
                        ConnectionLost::Protocol("message over the size limit"),
                        true,
                    );
                }
                if !self.chats.contains_key(&nick) {
                    return;
                }
                if self.classify_received(&nick, id) == Receipt::Deliver {
                    // Stored before it is shown and before it is acknowledged: a crash
                    // anywhere after this cannot show it twice or lose it.
                    let peer_instance =
                        self.state.contacts.get(&nick).and_then(|c| c.peer_instance);
                    debug_assert!(peer_instance.is_some(), "a message before the handshake");
                    let at = self.wall_time(self.now);
                    self.store(StoreOp::Received {
                        from: nick.clone(),
                        peer_instance: peer_instance.unwrap_or_default(),
                        id,
                        nonce,
                        text: text.clone(),
                        at,
                    });
                    self.emit(Event::Message {
                        nick: nick.clone(),
                        id,
                        text,
                    });
                }
                // Acknowledged once the whole read is handled (`flush_ack`).
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.ack_due = true;
                }
            }
            ChannelMessage::Ack { id } => {
                if self.chats.contains_key(&nick) {
                    self.acknowledged(&nick, id);
                }
            }
            ChannelMessage::Close { reason } => {
                self.seal_on(conn, &ChannelMessage::CloseAck);
                let now = self.now;
                let grace = self.config.handshake_timeout;
                if let Some(chat) = self.chats.get_mut(&nick) {
                    if !matches!(chat.closing, Some(CloseReason::ByUs(_))) {
                        chat.closing = Some(CloseReason::ByPeer(clip_reason(&reason)));
                    }
                    chat.close_deadline = Some(now + grace);
                }
                self.set_state(&nick, ChatState::Closing);
            }
            ChannelMessage::CloseAck => {
                let reason = self.chats.get(&nick).and_then(|c| c.closing.clone());
                match reason {
                    Some(reason) => {
                        self.drop_conn(conn);
                        self.end_chat(&nick, reason);
                    }
                    None => self.conn_lost(
                        conn,
                        ConnectionLost::Protocol("close-ack without close"),
                        true,
                    ),
                }
            }
            ChannelMessage::Resume { stored_upto, nonce } => {
                if stored_upto > MAX_MESSAGE_ID {
                    return self.conn_lost(
                        conn,
                        ConnectionLost::Protocol("a message id beyond the limit"),
                        true,
                    );
                }
                if self.chats.contains_key(&nick) {
                    self.resumed(&nick, stored_upto, nonce);
                }
            }
            ChannelMessage::Ping => {
                self.seal_on(conn, &ChannelMessage::Pong);
            }
            ChannelMessage::Pong => {}
            ChannelMessage::Accept { .. } | ChannelMessage::Deny { .. } => self.conn_lost(
                conn,
                ConnectionLost::Protocol("accept or deny after acceptance"),
                true,
            ),
        }
    }

    fn handshake_failed(&mut self, conn: ConnId, error: HandshakeError) {
        let nick = self.conn_nick(conn);
        let permanent = match &error {
            HandshakeError::Rejected(r) => matches!(
                r,
                RejectReason::WrongResponder
                    | RejectReason::Refused
                    | RejectReason::KeyMismatch
                    | RejectReason::BadProof
                    | RejectReason::ProtocolViolation
            ),
            HandshakeError::Impersonation { .. }
            | HandshakeError::BadCertificate(_)
            | HandshakeError::BadSignature
            | HandshakeError::BadEphemeral => true,
            _ => false,
        };
        if permanent {
            self.drop_conn(conn);
            if let Some(nick) = nick {
                if let HandshakeError::Impersonation {
                    expected,
                    presented,
                    ..
                } = &error
                {
                    let conflict = super::KeyConflict {
                        pinned: *expected,
                        presented: *presented,
                        certificate: None,
                    };
                    self.record_conflict(&nick, conflict);
                }
                self.end_chat(&nick, CloseReason::Failed(ChatFailure::Handshake(error)));
            }
        } else {
            let reason = match error {
                HandshakeError::Rejected(RejectReason::Simultaneous) => ConnectionLost::Superseded,
                e => ConnectionLost::Handshake(e),
            };
            self.conn_lost(conn, reason, true);
        }
    }

    /// Refuses an inbound handshake; reports it to the user if it looked like an attack.
    fn reject(
        &mut self,
        conn: ConnId,
        reason: RejectReason,
        report: Option<(Option<crate::nick::Nick>, HandshakeError)>,
    ) {
        if let Ok(frame) = encode_frame(&PeerFrame::Reject(reason)) {
            self.transmit(conn, frame);
        }
        self.drop_conn(conn);
        if let Some((nick, reason)) = report {
            self.emit(Event::IncomingRejected { nick, reason });
        }
    }

    /// If `c` held a request the user has not answered, forgets it and says it is gone.
    fn forget_request(&mut self, c: &Conn) {
        if let Stage::AwaitUser { request, hello, .. } = &c.stage
            && self.decisions.remove(request).is_some()
        {
            self.emit(Event::RequestGone {
                request: *request,
                nick: hello.hello.certificate.nick.clone(),
            });
        }
    }

    /// Forgets a connection and tells the runtime to close it.
    pub(super) fn drop_conn(&mut self, conn: ConnId) {
        if let Some(c) = self.conns.remove(&conn) {
            self.forget_request(&c);
            self.outputs.push_back(Output::Close { conn });
            if let Some(nick) = c.nick
                && let Some(chat) = self.chats.get_mut(&nick)
                && chat.conn == Some(conn)
            {
                chat.conn = None;
                if let Some(m) = self.mailboxes.get_mut(&nick) {
                    m.connection_lost();
                }
            }
            self.pump_dials();
        }
    }

    /// A connection ended abnormally. `close` says whether the runtime must still close it.
    pub(super) fn conn_lost(&mut self, conn: ConnId, reason: ConnectionLost, close: bool) {
        let Some(c) = self.conns.remove(&conn) else {
            return;
        };
        if close {
            self.outputs.push_back(Output::Close { conn });
        }
        self.forget_request(&c);
        let Some(nick) = c.nick else {
            return self.pump_dials();
        };
        let Some(chat) = self.chats.get_mut(&nick) else {
            return self.pump_dials();
        };
        if chat.conn != Some(conn) {
            return self.pump_dials();
        }
        chat.conn = None;
        if let Some(m) = self.mailboxes.get_mut(&nick) {
            m.connection_lost();
        }
        let Some(chat) = self.chats.get(&nick) else {
            return self.pump_dials();
        };
        if let Some(closing) = chat.closing.clone()
            && chat.state == ChatState::Closing
        {
            // The peer closed the stream after our CloseAck (or during our close).
            self.end_chat(&nick, closing);
            return self.pump_dials();
        }
        self.emit(Event::ConnectionLost {
            nick: nick.clone(),
            reason: reason.clone(),
        });
        self.attempt_failed(&nick, reason.to_string());
        self.pump_dials();
    }

    pub(super) fn connection_timeouts(&mut self) {
        let now = self.now;
        let due: Vec<(ConnId, bool)> = self
            .conns
            .iter()
            .filter_map(|(id, c)| {
                if c.deadline <= now {
                    Some((*id, true))
                } else if c.keepalive_at.is_some_and(|k| k <= now) {
                    Some((*id, false))
                } else {
                    None
                }
            })
            .collect();
        for (conn, expired) in due {
            if expired {
                self.conn_lost(conn, ConnectionLost::Timeout, true);
            } else {
                self.seal_on(conn, &ChannelMessage::Ping);
            }
        }
    }

    /// Opens connections for chats waiting to dial, within the concurrent-dial limit.
    pub(super) fn pump_dials(&mut self) {
        let dialing = self.conns.values().filter(|c| c.is_dialing()).count();
        let free = self.config.max_concurrent_dials.saturating_sub(dialing);
        if free == 0 {
            return;
        }
        let waiting: Vec<crate::nick::Nick> = self
            .chats
            .iter()
            .filter(|(n, c)| {
                c.state == ChatState::Connecting
                    && c.conn.is_none()
                    && self.expected_peer(n).is_some()
            })
            .map(|(n, _)| n.clone())
            .take(free)
            .collect();
        for nick in waiting {
            let Some((peer, port)) = self.expected_peer(&nick) else {
                continue;
            };
            if let Some(status) = self.status.get_mut(&nick)
                && status.port_hint.is_none()
            {
                // An attempt at the pinned port: hints may be tried again after it.
                status.hint_failed = false;
            }
            let conn = self.alloc_conn();
            let deadline = self.now + self.config.dial_timeout;
            let target = super::Target::Peer {
                onion: peer.onion,
                port,
            };
            self.conns
                .insert(conn, Conn::outbound(peer, port, deadline));
            if let Some(chat) = self.chats.get_mut(&nick) {
                chat.conn = Some(conn);
            }
            self.outputs.push_back(Output::Connect { conn, target });
        }
    }
}
