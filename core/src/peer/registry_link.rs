//! The peer's side of the registry protocol: register, look up, list, presence, heartbeat,
//! and reconnection with backoff.

use std::collections::BTreeMap;

use super::view::RegistryView;
use super::{Event, Input, Output, Peer, Target};
use crate::conn::ConnId;
use crate::frame::{FrameDecoder, decode_body, encode_frame};
use crate::nick::Nick;
use crate::registry::{
    ClientMessage, MAX_PAGE, Presence, RegisterError, Registration, ServerError, ServerMessage,
    UserRecord,
};
use crate::time::Instant;

/// Most registry requests waiting for the connection to open.
const MAX_QUEUED: usize = 256;

/// Why a registry request was made, so its answer can be routed.
#[derive(Debug, Clone)]
pub(super) enum Pending {
    /// `connect(nick)` needs the peer's record.
    Connect(Nick),
    /// Incoming handshakes need the record of the nick they claim (see `lookups`).
    Incoming(Nick),
    /// `refresh_users`.
    List,
}

/// The registry connection and what is in flight on it.
#[derive(Debug, Default)]
pub(super) struct RegistryLink {
    pub(super) conn: Option<ConnId>,
    connected: bool,
    decoder: FrameDecoder,
    challenge: Option<[u8; 32]>,
    want_registered: bool,
    registered: bool,
    queued: Vec<Vec<u8>>,
    pending: BTreeMap<u32, (Pending, Instant)>,
    next_request: u32,
    next_ping: Option<Instant>,
    /// The connection is given up if nothing arrives by then: a dial that is never
    /// answered, or a registry (or a Tor circuit) gone silent without closing.
    silent_deadline: Option<Instant>,
    retry_at: Option<Instant>,
    attempt: u32,
    /// Why the link last went down or the registration was refused, until it is back.
    problem: Option<String>,
}

impl RegistryLink {
    /// Where we stand with the registry, for the user.
    pub(super) fn view(&self) -> RegistryView {
        if self.registered {
            RegistryView::Registered
        } else if self.conn.is_some() && self.want_registered {
            RegistryView::Connecting {
                after: self.problem.clone(),
            }
        } else if let Some(reason) = &self.problem {
            RegistryView::Down {
                reason: reason.clone(),
                retry_at: self.retry_at,
            }
        } else if self.want_registered {
            RegistryView::Connecting { after: None }
        } else {
            RegistryView::Idle
        }
    }

    pub(super) fn next_timer(&self) -> impl Iterator<Item = Instant> + '_ {
        self.next_ping
            .into_iter()
            .chain(self.silent_deadline)
            .chain(self.retry_at)
            .chain(self.pending.values().map(|(_, t)| *t))
    }

    /// Queues `Unregister` if registered; false if there is nothing to unregister.
    pub(super) fn unregister(&mut self) -> bool {
        self.want_registered = false;
        if !(self.registered && self.connected) {
            return false;
        }
        if let Ok(bytes) = encode_frame(&ClientMessage::Unregister) {
            self.queued.push(bytes);
        }
        true
    }
}

impl Peer {
    /// Registers with the registry (connecting to it first if needed), and keeps the
    /// registration alive: after a lost connection it reconnects and registers again.
    pub fn register(&mut self, now: Instant) {
        self.now = now;
        self.registry.want_registered = true;
        if self.registry.registered {
            return;
        }
        if self.registry.challenge.is_some() {
            self.send_registration();
        } else {
            self.ensure_registry();
        }
    }

    /// Asks for a page of online users whose nick starts with `prefix`, after `after`.
    /// The answer arrives as [`Event::Users`].
    pub fn refresh_users(&mut self, now: Instant, prefix: &str, after: Option<&Nick>) {
        self.now = now;
        let request = self.registry_request(Pending::List);
        let message = ClientMessage::List {
            request,
            prefix: prefix.to_owned(),
            after: after.map(|n| n.to_string()),
            limit: MAX_PAGE,
        };
        self.registry_send(&message);
    }

    pub(super) fn lookup(&mut self, nick: &Nick, purpose: Pending) {
        let request = self.registry_request(purpose);
        self.registry_send(&ClientMessage::Lookup {
            request,
            nick: nick.as_str().to_owned(),
        });
    }

    fn registry_request(&mut self, purpose: Pending) -> u32 {
        let request = self.registry.next_request;
        self.registry.next_request = request.wrapping_add(1);
        let deadline = self.now + self.config.registry_timeout;
        self.registry.pending.insert(request, (purpose, deadline));
        request
    }

    fn registry_send(&mut self, message: &ClientMessage) {
        let Ok(bytes) = encode_frame(message) else {
            return;
        };
        if self.registry.connected {
            if let Some(conn) = self.registry.conn {
                self.transmit(conn, bytes);
            }
        } else {
            if self.registry.queued.len() < MAX_QUEUED {
                self.registry.queued.push(bytes);
            }
            self.ensure_registry();
        }
    }

    pub(super) fn flush_registry(&mut self) {
        if !self.registry.connected {
            return;
        }
        let Some(conn) = self.registry.conn else {
            return;
        };
        for bytes in std::mem::take(&mut self.registry.queued) {
            self.transmit(conn, bytes);
        }
    }

    fn ensure_registry(&mut self) {
        if self.registry.conn.is_some() || self.registry.retry_at.is_some() || self.done {
            return;
        }
        let conn = self.alloc_conn();
        self.registry.conn = Some(conn);
        self.registry.decoder = FrameDecoder::new();
        self.registry.silent_deadline = Some(self.now + self.config.dial_timeout);
        self.outputs.push_back(Output::Connect {
            conn,
            target: Target::Registry,
        });
    }

    fn send_registration(&mut self) {
        let (Some(challenge), Some(conn)) = (self.registry.challenge, self.registry.conn) else {
            return;
        };
        let registration = match Registration::signed(
            &self.identity,
            self.config.registry_onion.as_ref(),
            &challenge,
            self.config.port,
            &mut self.rng,
        ) {
            Ok(r) => r,
            Err(_) => return self.registry_lost("could not sign the registration".into()),
        };
        if let Ok(bytes) = encode_frame(&ClientMessage::Register(registration)) {
            self.transmit(conn, bytes);
        }
    }

    pub(super) fn registry_input(&mut self, input: Input<'_>) {
        match input {
            Input::Connected { .. } => {
                self.registry.connected = true;
                self.registry.silent_deadline = Some(self.now + self.registry_silence_allowed());
                self.registry.attempt = 0;
                self.registry.next_ping = Some(self.now + self.config.registry_ping_interval);
                if self.config.watch_presence {
                    self.registry_send(&ClientMessage::Subscribe);
                }
                self.flush_registry();
            }
            Input::ConnectFailed { reason, .. } => self.registry_lost(reason),
            Input::Closed { .. } => self.registry_lost("the registry closed the connection".into()),
            Input::Received { mut bytes, .. } => loop {
                // While a registration is wanted, only its answer counts as life: a
                // registry that answers pings but never registers us is no registry.
                if self.registry.registered || !self.registry.want_registered {
                    self.registry.silent_deadline =
                        Some(self.now + self.registry_silence_allowed());
                }
                let body = match self.registry.decoder.decode(&mut bytes) {
                    Ok(Some(body)) => body,
                    Ok(None) => return,
                    Err(e) => {
                        return self
                            .registry_lost(format!("the registry sent an unreadable frame: {e}"));
                    }
                };
                match decode_body::<ServerMessage>(&body) {
                    Ok(message) => self.registry_message(message),
                    Err(e) => {
                        return self.registry_lost(format!(
                            "the registry sent an unreadable message: {e}"
                        ));
                    }
                }
                if self.registry.conn.is_none() {
                    return;
                }
            },
        }
    }

    fn registry_message(&mut self, message: ServerMessage) {
        match message {
            ServerMessage::Challenge { nonce } => {
                self.registry.challenge = Some(nonce);
                if self.registry.want_registered && !self.registry.registered {
                    self.send_registration();
                }
            }
            ServerMessage::Registered => {
                self.registry.registered = true;
                self.registry.problem = None;
                self.registry.silent_deadline = Some(self.now + self.registry_silence_allowed());
                self.emit(Event::Registered);
            }
            ServerMessage::RegisterRejected(e) => {
                // Someone online holds our nick or address (a stale copy of us, say): it
                // may be gone soon, so we keep trying. Anything else will not change.
                // A busy registry takes registrations again shortly.
                let transient = matches!(
                    e,
                    RegisterError::NickTaken
                        | RegisterError::AddressTaken
                        | RegisterError::Busy
                        | RegisterError::StoreUnavailable
                );
                self.registry.problem = Some(e.to_string());
                self.emit(Event::RegistrationFailed(e));
                if transient {
                    self.registry_lost(
                        "the registry refused the registration; trying again".into(),
                    );
                } else {
                    self.registry.want_registered = false;
                }
            }
            ServerMessage::LookupResult { request, record } => {
                if let Some((purpose, _)) = self.registry.pending.remove(&request) {
                    let record = record.filter(|r| r.certificate.verify().is_ok());
                    self.lookup_answered(purpose, record);
                }
            }
            ServerMessage::Busy { request } => {
                if let Some((purpose, _)) = self.registry.pending.remove(&request) {
                    self.lookup_failed(purpose, "the registry is busy; try again shortly");
                }
            }
            ServerMessage::Page {
                request,
                users,
                more,
            } => {
                if self.registry.pending.remove(&request).is_some() {
                    // A record whose certificate does not verify is the registry lying.
                    let users: Vec<UserRecord> = users
                        .into_iter()
                        .filter(|u| u.certificate.verify().is_ok())
                        .collect();
                    self.emit(Event::Users { users, more });
                }
            }
            ServerMessage::Presence(changes) => {
                for p in changes {
                    let (nick, online) = match &p {
                        // A record whose certificate does not verify is the registry lying.
                        Presence::Joined(r) if r.certificate.verify().is_err() => continue,
                        Presence::Joined(r) => (r.nick().clone(), true),
                        Presence::Left(nick) => (nick.clone(), false),
                        Presence::Resync => {
                            self.emit(Event::Presence(p));
                            self.inbound_lookups.forget_all();
                            self.presence_lost();
                            continue;
                        }
                    };
                    if let Presence::Joined(record) = &p {
                        self.follow_port(record);
                    }
                    self.emit(Event::Presence(p));
                    self.inbound_lookups.forget(&nick);
                    self.presence_changed(&nick, online);
                }
            }
            ServerMessage::Unregistered => {
                self.registry.registered = false;
                self.emit(Event::Unregistered);
                if self.shutdown.is_some() {
                    self.finish_shutdown();
                }
            }
            ServerMessage::Pong => {}
            ServerMessage::Error(e) => {
                if e == ServerError::Replaced {
                    // Another process with our identity took over; fighting it would flap.
                    self.registry.want_registered = false;
                    self.registry.registered = false;
                }
                self.emit(Event::RegistryError(e));
            }
            ServerMessage::ShuttingDown => {
                self.registry_lost("the registry is shutting down".into())
            }
        }
    }

    fn lookup_answered(&mut self, purpose: Pending, record: Option<UserRecord>) {
        match purpose {
            Pending::Connect(nick) => self.connect_lookup_answered(&nick, record),
            Pending::Incoming(nick) => {
                let now = self.now;
                for conn in self.inbound_lookups.answered(now, &nick, record.as_ref()) {
                    self.incoming_lookup_answered(conn, record.clone());
                }
            }
            Pending::List => {}
        }
    }

    fn lookup_failed(&mut self, purpose: Pending, reason: &str) {
        match purpose {
            Pending::Connect(nick) => {
                self.attempt_failed(&nick, format!("registry lookup failed: {reason}"))
            }
            Pending::Incoming(nick) => {
                for conn in self.inbound_lookups.failed(&nick) {
                    self.incoming_registry_unavailable(conn);
                }
            }
            Pending::List => self.emit(Event::RegistryLost {
                reason: format!("user list not received: {reason}"),
                retry_at: self.registry.retry_at,
            }),
        }
    }

    fn registry_lost(&mut self, reason: String) {
        if let Some(conn) = self.registry.conn.take() {
            self.outputs.push_back(Output::Close { conn });
        }
        let was_registered = self.registry.registered;
        self.registry.connected = false;
        self.registry.registered = false;
        self.registry.challenge = None;
        self.registry.next_ping = None;
        self.registry.silent_deadline = None;
        self.registry.queued.clear();
        if self.shutdown.is_some() {
            return self.finish_shutdown();
        }
        let retry = self.registry.want_registered || was_registered;
        self.registry.retry_at = if retry {
            self.registry.attempt = self.registry.attempt.saturating_add(1);
            let jitter = self.jitter();
            Some(self.now + self.config.backoff.delay(self.registry.attempt, jitter))
        } else {
            None
        };
        self.registry.problem = Some(reason.clone());
        self.emit(Event::RegistryLost {
            reason: reason.clone(),
            retry_at: self.registry.retry_at,
        });
        for (_, (purpose, _)) in std::mem::take(&mut self.registry.pending) {
            self.lookup_failed(purpose, &reason);
        }
    }

    /// How long the registry may stay silent: two pings go unanswered.
    /// How long the registry may say nothing: two ping intervals, so a ping it leaves a
    /// whole interval unanswered gives it up (60 s with the default 30 s pings).
    fn registry_silence_allowed(&self) -> core::time::Duration {
        self.config.registry_ping_interval * 2
    }

    pub(super) fn registry_timeout(&mut self) {
        let now = self.now;
        if self.registry.silent_deadline.is_some_and(|t| t <= now) {
            let reason = if self.registry.connected {
                "the registry stopped answering"
            } else {
                "the registry did not answer the connection in time"
            };
            return self.registry_lost(reason.into());
        }
        if self.registry.retry_at.is_some_and(|t| t <= now) {
            self.registry.retry_at = None;
            self.ensure_registry();
        }
        if self.registry.next_ping.is_some_and(|t| t <= now) {
            self.registry.next_ping = Some(now + self.config.registry_ping_interval);
            self.registry_send(&ClientMessage::Ping);
        }
        let expired: Vec<u32> = self
            .registry
            .pending
            .iter()
            .filter(|(_, (_, t))| *t <= now)
            .map(|(r, _)| *r)
            .collect();
        for request in expired {
            if let Some((purpose, _)) = self.registry.pending.remove(&request) {
                self.lookup_failed(purpose, "the registry did not answer in time");
            }
        }
    }
}
