//! The registry server's state machine.
//!
//! The runtime calls [`Registry::accept_connection`] for each new connection, feeds bytes
//! with [`Registry::handle_received`] and closures with [`Registry::handle_closed`], drains
//! [`Registry::poll_output`], and calls [`Registry::handle_timeout`] at
//! [`Registry::poll_timeout`].

use core::time::Duration;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

use crate::rng::ForwardSecureRng;
use rand_core::{CryptoRng, Rng};

use super::bindings::{Binding, BindingOp, Bindings, RegistryTime};
use super::presence::{Due, PresenceLog, Subscription};
use super::wire::*;
use crate::conn::ConnId;
use crate::frame::{FrameDecoder, MAX_FRAME_BODY, decode_body, encode_frame};
use crate::identity::{
    Ed25519Signature, KeyBindingCertificate, OnionAddress, RsaPublicKey, verify_onion_signature,
};
use crate::nick::Nick;
use crate::time::Instant;

/// Largest frame a registry client may send. Client messages are small (a registration
/// with a 3072-bit key is under 1.2 KiB), so idle connections cannot pin 64 KiB each.
pub const MAX_CLIENT_FRAME: usize = 4 * 1024;

/// Limits of a registry. Every one bounds what a client can make it hold or do.
#[derive(Debug, Clone)]
pub struct RegistryConfig {
    /// Most registered users.
    pub max_users: usize,
    /// Most open connections (registered or not).
    pub max_connections: usize,
    /// A connection silent this long is dropped (clients ping well within it).
    pub heartbeat_timeout: Duration,
    /// Token bucket: tokens a client may spend in a burst (a message costs 1, a page 5, a
    /// registration 10).
    pub burst: u32,
    /// Token bucket: tokens refilled per second.
    pub per_second: u32,
    /// Registration attempts allowed per connection.
    pub max_register_attempts: u8,
    /// How long a nick stays bound to its owner's onion and key after the owner was last
    /// seen.
    pub reserve_for: Duration,
    /// Most nick bindings kept (online or not): a registration that would need a new one
    /// beyond this is refused as `RegistryFull` until older bindings lapse.
    pub max_bindings: usize,
    /// Most bindings one RSA key may hold: beyond, `KeyLimit`. One key certifying any
    /// number of onion addresses could otherwise fill `max_bindings` for the whole
    /// reservation time.
    pub max_bindings_per_key: usize,
    /// Registrations from everyone together: a burst this deep (a restarted registry's
    /// users all come back at once)...
    pub registrations_burst: u32,
    /// ...refilled at this many a second. Beyond, `RegisterRejected(Busy)`.
    pub registrations_per_second: u32,
    /// A subscriber is sent at most one presence frame this often: changes in between
    /// are coalesced.
    pub presence_interval: Duration,
    /// Presence changes remembered for subscribers that are behind; one that falls
    /// further behind is sent `Resync`.
    pub presence_backlog: usize,
    /// The registry's onion address, which registrations must name; `None` for a registry
    /// reached without Tor (loopback only).
    pub onion: Option<OnionAddress>,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        Self {
            max_users: 100_000,
            max_connections: 120_000,
            heartbeat_timeout: Duration::from_secs(90),
            burst: 50,
            per_second: 20,
            max_register_attempts: 5,
            reserve_for: Duration::from_secs(30 * 86_400),
            max_bindings: 1_000_000,
            max_bindings_per_key: 4,
            registrations_burst: 10_000,
            registrations_per_second: 1_000,
            presence_interval: Duration::from_millis(250),
            presence_backlog: 4096,
            onion: None,
        }
    }
}

/// Tokens a message costs from its client's budget: what it costs the registry. A
/// registration checks two signatures and, like an unregistration, changes presence; a page
/// copies up to `MAX_PAGE` records.
fn request_cost(message: &ClientMessage) -> u32 {
    match message {
        ClientMessage::Register(_) | ClientMessage::Unregister => 10,
        ClientMessage::List { .. } => 5,
        _ => 1,
    }
}

/// What the registry asks its runtime to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistryOutput {
    /// Send these bytes (one or more whole frames) on `conn`.
    Transmit {
        /// Where.
        conn: ConnId,
        /// What.
        bytes: Vec<u8>,
    },
    /// Close `conn` once what was queued before is sent.
    Close {
        /// Which.
        conn: ConnId,
    },
    /// Store this durably before carrying out any later output.
    Store(BindingOp),
    /// Send these bytes (one presence frame) on `conn`, unless its queue is already well
    /// filled: then drop them and call [`Registry::handle_presence_dropped`]. Presence is
    /// never a reason to disconnect a client that is slow to read.
    Presence {
        /// Where.
        conn: ConnId,
        /// What.
        bytes: Vec<u8>,
    },
}

/// A token bucket, in thousandths of a token.
struct TokenBucket {
    milli: u64,
    refilled_at: Instant,
}

impl TokenBucket {
    fn full(burst: u32, now: Instant) -> Self {
        Self {
            milli: u64::from(burst) * 1000,
            refilled_at: now,
        }
    }

    /// Takes `cost` tokens from a bucket `burst` deep refilled at `per_second`, if it
    /// holds them.
    fn take(&mut self, now: Instant, burst: u32, per_second: u32, cost: u32) -> bool {
        let elapsed = now.saturating_duration_since(self.refilled_at);
        let refill = (elapsed.as_micros() as u64).saturating_mul(u64::from(per_second)) / 1000;
        self.milli = self
            .milli
            .saturating_add(refill)
            .min(u64::from(burst) * 1000);
        self.refilled_at = now;
        let cost = u64::from(cost) * 1000;
        if self.milli < cost {
            return false;
        }
        self.milli -= cost;
        true
    }
}

/// The registry cannot take another connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the registry holds its maximum number of connections")]
pub struct RegistryFull;

struct Client {
    decoder: FrameDecoder,
    challenge: [u8; 32],
    /// Canonical nick, once registered.
    registered: Option<String>,
    /// Where it is in the presence log, once it subscribed.
    subscription: Option<Subscription>,
    deadline: Instant,
    /// What it may still ask (see `request_cost`).
    tokens: TokenBucket,
    register_attempts: u8,
    /// Requests refused as `Busy` since the last one served.
    refused: u32,
}

struct User {
    record: UserRecord,
    conn: ConnId,
}

/// The registry server's state.
pub struct Registry {
    config: RegistryConfig,
    rng: ForwardSecureRng,
    next_conn: u64,
    clients: BTreeMap<ConnId, Client>,
    users: BTreeMap<String, User>,
    onions: BTreeMap<OnionAddress, String>,
    deadlines: BTreeSet<(Instant, ConnId)>,
    outputs: VecDeque<RegistryOutput>,
    /// Who owns which nick and onion, online or not. Changed only through `bind`.
    bindings: Bindings,
    /// Changes of who is online, for subscribers.
    presence: PresenceLog,
    /// Some subscriber is due a presence frame.
    presence_pending: bool,
    /// No presence frame goes out before this.
    presence_next_flush: Instant,
    /// Registrations, from everyone together.
    registrations: TokenBucket,
    /// The registry's own clock at `started` (see [`RegistryTime`]).
    time_at_start: RegistryTime,
    started: Instant,
    now: Instant,
    /// When the clock is next stored.
    clock_due: Instant,
    /// Whether the runtime's store takes writes. While it does not, nothing that would need
    /// a write happens: new bindings are refused ([`RegisterError::StoreUnavailable`]),
    /// refreshes of existing ones and the clock wait, and the bindings stay as stored.
    store_available: bool,
}

/// How often the registry's clock is stored (a crash loses at most this much of it).
const CLOCK_EVERY: Duration = Duration::from_secs(60);

impl Registry {
    /// A registry that remembers nothing yet, whose randomness derives from `rng` (OS RNG
    /// in production, seeded in tests). Servers that keep bindings use
    /// [`Registry::restore`].
    pub fn new(config: RegistryConfig, rng: &mut impl CryptoRng) -> Self {
        Self::restore(config, Bindings::default(), rng, Instant::ZERO)
    }

    /// A registry that carries on from `bindings` (what its runtime stored of every
    /// [`RegistryOutput::Store`]), its clock from theirs.
    pub fn restore(
        config: RegistryConfig,
        bindings: Bindings,
        rng: &mut impl CryptoRng,
        now: Instant,
    ) -> Self {
        let mut seed = [0u8; 32];
        rng.fill_bytes(&mut seed);
        let mut registry = Self {
            time_at_start: bindings.clock(),
            bindings,
            started: now,
            now,
            clock_due: now + CLOCK_EVERY,
            store_available: true,
            rng: ForwardSecureRng::from_seed(seed),
            next_conn: 0,
            clients: BTreeMap::new(),
            users: BTreeMap::new(),
            onions: BTreeMap::new(),
            deadlines: BTreeSet::new(),
            outputs: VecDeque::new(),
            presence: PresenceLog::new(config.presence_backlog),
            presence_pending: false,
            presence_next_flush: now,
            registrations: TokenBucket::full(config.registrations_burst, now),
            config,
        };
        // Bindings whose owners were not seen for the whole reservation are let go.
        let expired: Vec<Nick> = registry
            .bindings
            .iter()
            .filter(|b| !registry.holds(b))
            .map(|b| b.nick.clone())
            .collect();
        for nick in expired {
            registry.bind(BindingOp::Release(nick));
        }
        registry
    }

    /// Who owns which nick, online or not.
    pub fn bindings(&self) -> &Bindings {
        &self.bindings
    }

    /// The registry's clock now.
    fn time(&self) -> RegistryTime {
        self.time_at_start
            .plus(self.now.saturating_duration_since(self.started))
    }

    /// Whether `binding` still holds (the registry saw its owner within `reserve_for` of
    /// its own running time).
    fn holds(&self, binding: &Binding) -> bool {
        self.time() < binding.last_seen.plus(self.config.reserve_for)
    }

    /// Changes the bindings and asks for the change to be stored; while the store takes
    /// no writes, changes nothing (callers refuse what must be stored before that).
    fn bind(&mut self, op: BindingOp) {
        if !self.store_available {
            return;
        }
        self.bindings.apply(&op);
        self.outputs.push_back(RegistryOutput::Store(op));
    }

    /// The runtime's store takes writes again (after [`Registry::writes_refused`]).
    pub fn store_available_again(&mut self) {
        self.store_available = true;
        // The clock, and whatever waited, is stored again from now on.
        self.clock_due = self.now;
    }

    /// The runtime's store refused the writes of `lost`, the outputs of one drain, none of
    /// which acted; `stored` is what the store holds. Until
    /// [`Registry::store_available_again`], nothing that needs a write happens. Of `lost`:
    /// a registration whose binding was not stored is undone and refused as
    /// [`RegisterError::StoreUnavailable`] (the client tries again later); any other
    /// connection an answer was lost for is closed (its client reconnects for what it did
    /// not get); a lost presence frame counts as dropped (its subscriber is sent `Resync`).
    pub fn writes_refused(&mut self, stored: Bindings, lost: Vec<RegistryOutput>) {
        self.store_available = false;
        self.bindings = stored;
        let mut closed = BTreeSet::new();
        for output in lost {
            match output {
                RegistryOutput::Transmit { conn, .. } => {
                    if closed.contains(&conn) || self.registration_unrecorded(conn) {
                        continue;
                    }
                    closed.insert(conn);
                    self.outputs.push_back(RegistryOutput::Close { conn });
                    self.handle_closed(conn);
                }
                RegistryOutput::Close { conn } => {
                    if closed.insert(conn) {
                        self.outputs.push_back(RegistryOutput::Close { conn });
                    }
                }
                RegistryOutput::Presence { conn, .. } => self.handle_presence_dropped(conn),
                RegistryOutput::Store(_) => {}
            }
        }
    }

    /// An answer to `conn` was lost with a write the store refused. If `conn` registered
    /// a nick whose binding the store does not hold, that registration is undone and
    /// refused as [`RegisterError::StoreUnavailable`], and true is returned.
    fn registration_unrecorded(&mut self, conn: ConnId) -> bool {
        let Some(key) = self.clients.get(&conn).and_then(|c| c.registered.clone()) else {
            return false;
        };
        let Some(user) = self.users.get(&key) else {
            return false;
        };
        let fingerprint = user.record.certificate.rsa.fingerprint();
        let stored = self.bindings.of_nick(&key).is_some_and(|b| {
            b.onion == *user.record.onion()
                && b.fingerprint == fingerprint
                && b.serial == user.record.certificate.serial
        });
        if stored {
            return false;
        }
        if let Some(c) = self.clients.get_mut(&conn) {
            c.registered = None;
        }
        self.remove_user(&key);
        self.send(
            conn,
            &ServerMessage::RegisterRejected(RegisterError::StoreUnavailable),
        );
        true
    }

    /// Number of registered users.
    pub fn user_count(&self) -> usize {
        self.users.len()
    }

    /// Number of open connections.
    pub fn connection_count(&self) -> usize {
        self.clients.len()
    }

    /// A new connection arrived: returns its id (and queues the challenge), or refuses it.
    pub fn accept_connection(&mut self, now: Instant) -> Result<ConnId, RegistryFull> {
        self.now = self.now.max(now);
        if self.clients.len() >= self.config.max_connections {
            return Err(RegistryFull);
        }
        let conn = ConnId(self.next_conn);
        self.next_conn += 1;
        let mut challenge = [0u8; 32];
        self.rng.fill_bytes(&mut challenge);
        let deadline = now + self.config.heartbeat_timeout;
        self.clients.insert(
            conn,
            Client {
                decoder: FrameDecoder::with_limit(MAX_CLIENT_FRAME),
                challenge,
                registered: None,
                subscription: None,
                deadline,
                tokens: TokenBucket::full(self.config.burst, now),
                register_attempts: 0,
                refused: 0,
            },
        );
        self.deadlines.insert((deadline, conn));
        self.send(conn, &ServerMessage::Challenge { nonce: challenge });
        Ok(conn)
    }

    /// Bytes arrived on `conn`.
    pub fn handle_received(&mut self, now: Instant, conn: ConnId, mut bytes: &[u8]) {
        self.now = self.now.max(now);
        loop {
            let Some(client) = self.clients.get_mut(&conn) else {
                return;
            };
            let body = match client.decoder.decode(&mut bytes) {
                Ok(Some(body)) => body,
                Ok(None) => return,
                Err(_) => return self.fail(conn, ServerError::Malformed),
            };
            let Ok(message) = decode_body::<ClientMessage>(&body) else {
                return self.fail(conn, ServerError::Malformed);
            };
            let (burst, per_second) = (self.config.burst, self.config.per_second);
            if !client
                .tokens
                .take(now, burst, per_second, request_cost(&message))
            {
                // A lookup or a page over budget is refused on its own: the client keeps
                // its connection and registration. Past a burst of refusals, or for any
                // other message, the client is flooding and is dropped.
                let request = match &message {
                    ClientMessage::Lookup { request, .. } | ClientMessage::List { request, .. } => {
                        Some(*request)
                    }
                    _ => None,
                };
                client.refused = client.refused.saturating_add(1);
                match request {
                    Some(request) if client.refused <= self.config.burst => {
                        self.send(conn, &ServerMessage::Busy { request });
                        continue;
                    }
                    _ => return self.fail(conn, ServerError::RateLimited),
                }
            }
            client.refused = 0;
            self.touch(now, conn);
            self.handle_message(conn, message);
        }
    }

    /// The connection closed (either side): the user it registered leaves.
    pub fn handle_closed(&mut self, conn: ConnId) {
        if let Some(client) = self.clients.remove(&conn) {
            self.deadlines.remove(&(client.deadline, conn));
            if let Some(nick) = client.registered {
                self.remove_user(&nick);
            }
        }
    }

    /// The runtime dropped a [`RegistryOutput::Presence`] for `conn` (it was not reading):
    /// it is sent `Resync` next.
    pub fn handle_presence_dropped(&mut self, conn: ConnId) {
        if let Some(s) = self
            .clients
            .get_mut(&conn)
            .and_then(|c| c.subscription.as_mut())
        {
            self.presence.dropped(s);
            self.presence_pending = true;
        }
    }

    /// When [`Registry::handle_timeout`] next has work.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let heartbeat = self.deadlines.first().map(|(t, _)| *t);
        let presence = self.presence_pending.then_some(self.presence_next_flush);
        let clock = self.store_available.then_some(self.clock_due);
        heartbeat.into_iter().chain(presence).chain(clock).min()
    }

    /// Drops every connection whose heartbeat deadline passed; stores the clock when due.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.now = self.now.max(now);
        if self.store_available && now >= self.clock_due {
            self.clock_due = now + CLOCK_EVERY;
            self.bind(BindingOp::Clock(self.time()));
        }
        while let Some(&(deadline, conn)) = self.deadlines.first() {
            if deadline > now {
                break;
            }
            self.fail(conn, ServerError::Timeout);
        }
    }

    /// Tells every client the registry is going away and closes every connection.
    pub fn shutdown(&mut self) {
        let conns: Vec<ConnId> = self.clients.keys().copied().collect();
        for conn in conns {
            self.send(conn, &ServerMessage::ShuttingDown);
            self.outputs.push_back(RegistryOutput::Close { conn });
            self.handle_closed(conn);
        }
        self.bind(BindingOp::Clock(self.time()));
    }

    /// The next thing for the runtime to do. Presence goes out when everything else has,
    /// at most once per `presence_interval`: what changed meanwhile is coalesced.
    pub fn poll_output(&mut self) -> Option<RegistryOutput> {
        if self.outputs.is_empty() && self.presence_pending && self.now >= self.presence_next_flush
        {
            self.flush_presence();
        }
        self.outputs.pop_front()
    }

    /// Sends every subscriber that is behind one frame: the changes after its cursor (one
    /// encoding shared by every subscriber at that cursor), or `Resync`.
    fn flush_presence(&mut self) {
        self.presence_pending = false;
        let before = self.outputs.len();
        let mut resync = Vec::new();
        let mut behind: BTreeMap<u64, Vec<ConnId>> = BTreeMap::new();
        for (&conn, client) in &self.clients {
            match client.subscription.map(|s| self.presence.due(&s)) {
                None | Some(Due::Nothing) => {}
                Some(Due::Resync) => resync.push(conn),
                Some(Due::Changes { cursor }) => behind.entry(cursor).or_default().push(conn),
            }
        }
        let resync_bytes = encode_frame(&ServerMessage::Presence(vec![Presence::Resync]));
        let head = self.presence.head();
        for conn in resync {
            self.presence_sent(conn, head, resync_bytes.as_ref().ok());
        }
        for (cursor, conns) in behind {
            let batch = self.presence.batch(cursor);
            let states: Vec<(Presence, ConnId)> = batch
                .changes
                .iter()
                .map(|(nick, by)| (self.presence_of(nick), *by))
                .collect();
            let frame = |except: Option<ConnId>| {
                let changes: Vec<Presence> = states
                    .iter()
                    .filter(|(_, by)| Some(*by) != except)
                    .map(|(p, _)| p.clone())
                    .collect();
                let bytes = encode_frame(&ServerMessage::Presence(changes.clone()));
                debug_assert!(bytes.is_ok(), "a presence batch fits a frame");
                (!changes.is_empty()).then_some(bytes.ok()).flatten()
            };
            let shared = frame(None);
            for conn in conns {
                // A connection is not told of its own registration's changes.
                let own = states.iter().any(|(_, by)| *by == conn);
                let bytes = if own {
                    frame(Some(conn))
                } else {
                    shared.clone()
                };
                self.presence_sent(conn, batch.next, bytes.as_ref());
            }
            if batch.next < head {
                self.presence_pending = true;
            }
        }
        if self.outputs.len() > before {
            self.presence_next_flush = self.now + self.config.presence_interval;
        }
    }

    /// `conn` is sent `bytes` (if any), and is at `cursor` in the presence log.
    fn presence_sent(&mut self, conn: ConnId, cursor: u64, bytes: Option<&Vec<u8>>) {
        if let Some(s) = self
            .clients
            .get_mut(&conn)
            .and_then(|c| c.subscription.as_mut())
        {
            PresenceLog::sent(s, cursor);
        }
        if let Some(bytes) = bytes {
            self.outputs.push_back(RegistryOutput::Presence {
                conn,
                bytes: bytes.clone(),
            });
        }
    }

    /// Whether `nick` is online now, as presence says it.
    fn presence_of(&self, nick: &Nick) -> Presence {
        match self.users.get(&nick.canonical()) {
            Some(user) => Presence::Joined(user.record.clone()),
            None => Presence::Left(nick.clone()),
        }
    }

    /// `nick` joined or left because of `by`: subscribers are told at the next flush.
    fn presence_changed(&mut self, nick: Nick, by: ConnId) {
        self.presence.record(nick, by);
        self.presence_pending = true;
    }

    fn touch(&mut self, now: Instant, conn: ConnId) {
        if let Some(client) = self.clients.get_mut(&conn) {
            self.deadlines.remove(&(client.deadline, conn));
            client.deadline = now + self.config.heartbeat_timeout;
            self.deadlines.insert((client.deadline, conn));
        }
    }

    fn handle_message(&mut self, conn: ConnId, message: ClientMessage) {
        match message {
            ClientMessage::Register(reg) => self.register(conn, reg),
            ClientMessage::Lookup { request, nick } => {
                let record = Nick::new(&nick)
                    .ok()
                    .and_then(|n| self.users.get(&n.canonical()))
                    .map(|u| u.record.clone());
                self.send(conn, &ServerMessage::LookupResult { request, record });
            }
            ClientMessage::List {
                request,
                prefix,
                after,
                limit,
            } => {
                let (users, more) = self.page(&prefix, after.as_deref(), limit);
                self.send(
                    conn,
                    &ServerMessage::Page {
                        request,
                        users,
                        more,
                    },
                );
            }
            ClientMessage::Subscribe => {
                let from_now = self.presence.subscribe();
                if let Some(c) = self.clients.get_mut(&conn) {
                    c.subscription.get_or_insert(from_now);
                }
            }
            ClientMessage::Unregister => {
                let nick = self
                    .clients
                    .get_mut(&conn)
                    .and_then(|c| c.registered.take());
                match nick {
                    Some(nick) => {
                        self.remove_user(&nick);
                        self.send(conn, &ServerMessage::Unregistered);
                    }
                    None => self.fail(conn, ServerError::NotRegistered),
                }
            }
            ClientMessage::Ping => self.send(conn, &ServerMessage::Pong),
        }
    }

    fn page(&self, prefix: &str, after: Option<&str>, limit: u16) -> (Vec<UserRecord>, bool) {
        let prefix = prefix.to_ascii_lowercase();
        let limit = usize::from(limit.clamp(1, MAX_PAGE));
        // Every key iterated is >= prefix, so the first one without it ends the scan.
        let start = match after.map(str::to_ascii_lowercase) {
            Some(a) if a >= prefix => core::ops::Bound::Excluded(a),
            _ => core::ops::Bound::Included(prefix.clone()),
        };
        let mut users = Vec::with_capacity(limit);
        let mut more = false;
        // Room for the page's own fields; records must fit in one frame with it.
        let mut budget = MAX_FRAME_BODY - 32;
        for (key, user) in self.users.range((start, core::ops::Bound::Unbounded)) {
            if !key.starts_with(&prefix) {
                break;
            }
            let size = postcard::experimental::serialized_size(&user.record).unwrap_or(usize::MAX);
            if users.len() == limit || size > budget {
                more = true;
                break;
            }
            budget -= size;
            users.push(user.record.clone());
        }
        (users, more)
    }

    fn register(&mut self, conn: ConnId, reg: Registration) {
        let Some(client) = self.clients.get_mut(&conn) else {
            return;
        };
        client.register_attempts = client.register_attempts.saturating_add(1);
        if client.register_attempts > self.config.max_register_attempts {
            return self.fail(conn, ServerError::TooManyAttempts);
        }
        if client.registered.is_some() {
            return self.send(
                conn,
                &ServerMessage::RegisterRejected(RegisterError::AlreadyRegistered),
            );
        }
        let challenge = client.challenge;
        // Only a registration that would succeed spends the registry-wide budget: garbage
        // and refusals (checked first, at the cost of the client's own budget) cannot keep
        // honest clients out as "busy".
        let reply = self.validate(&challenge, reg).and_then(|record| {
            self.admit(conn, &record)?;
            let (burst, per_second) = (
                self.config.registrations_burst,
                self.config.registrations_per_second,
            );
            if !self.registrations.take(self.now, burst, per_second, 1) {
                return Err(RegisterError::Busy);
            }
            self.insert_user(conn, record)
        });
        match reply {
            Ok(()) => self.send(conn, &ServerMessage::Registered),
            Err(e) => self.send(conn, &ServerMessage::RegisterRejected(e)),
        }
    }

    fn validate(
        &self,
        challenge: &[u8; 32],
        reg: Registration,
    ) -> Result<UserRecord, RegisterError> {
        let nick = Nick::new(&reg.nick).map_err(|_| RegisterError::InvalidNick)?;
        if ed25519_dalek::VerifyingKey::from_bytes(&reg.onion).is_err() {
            return Err(RegisterError::InvalidOnion);
        }
        let onion = OnionAddress::from_public_key(reg.onion);
        let rsa =
            RsaPublicKey::from_der(&reg.rsa_public_key).map_err(|_| RegisterError::InvalidKey)?;
        if reg.port == 0 {
            return Err(RegisterError::InvalidPort);
        }
        let certificate = KeyBindingCertificate {
            onion,
            nick,
            rsa,
            serial: reg.certificate_serial,
            signature: Ed25519Signature(reg.certificate_signature.0),
        };
        certificate
            .verify()
            .map_err(|_| RegisterError::BadCertificate)?;
        let signed = registration_signed_bytes(
            self.config.onion.as_ref(),
            challenge,
            &certificate,
            reg.port,
        );
        if !certificate
            .rsa
            .verify_pss(&signed, &reg.challenge_signature)
        {
            return Err(RegisterError::BadSignature);
        }
        if !verify_onion_signature(
            &certificate.onion,
            &onion_proof_bytes(&signed),
            &reg.onion_signature.0,
        ) {
            return Err(RegisterError::BadOnionSignature);
        }
        Ok(UserRecord {
            certificate,
            port: reg.port,
        })
    }

    /// Whether `record` may be registered on `conn` now, changing nothing; if it names
    /// the same identity as a registration on another connection, that one is stale
    /// (a restarted client whose old connection has not timed out) and is returned.
    fn admit(&self, conn: ConnId, record: &UserRecord) -> Result<Option<ConnId>, RegisterError> {
        let key = record.nick().canonical();
        let fingerprint = record.certificate.rsa.fingerprint();
        if self.bindings.is_revoked(record.onion()) {
            return Err(RegisterError::AddressRevoked);
        }
        let mut stale = None;
        if let Some(existing) = self.users.get(&key) {
            if existing.conn == conn || existing.record.certificate != record.certificate {
                return Err(RegisterError::NickTaken);
            }
            stale = Some(existing.conn);
        }
        if stale.is_none() && self.onions.contains_key(record.onion()) {
            return Err(RegisterError::AddressTaken);
        }
        // A nick or onion bound to another owner who was seen recently stays theirs. The
        // owner's onion key may certify a new RSA key with a higher serial (the registration
        // proved that key is held now); an older certificate is never taken back.
        let own = self.bindings.of_nick(&key);
        if let Some(b) = own
            && self.holds(b)
        {
            let same_onion = b.onion == *record.onion();
            let serial = record.certificate.serial;
            if same_onion && serial < b.serial {
                return Err(RegisterError::StaleCertificate);
            }
            let owner = same_onion && b.fingerprint == fingerprint;
            let rotated = same_onion && serial > b.serial;
            if !owner && !rotated {
                return Err(RegisterError::NickReserved);
            }
        }
        if let Some(b) = self.bindings.of_onion(record.onion())
            && b.nick.canonical() != key
            && self.holds(b)
        {
            return Err(RegisterError::AddressReserved);
        }
        if stale.is_none() && self.users.len() >= self.config.max_users {
            return Err(RegisterError::RegistryFull);
        }
        let needs_binding = own.is_none_or(|b| !self.holds(b));
        if needs_binding && self.bindings.len() >= self.config.max_bindings {
            return Err(RegisterError::RegistryFull);
        }
        // One key certifying onion after onion must not fill the binding table: a key
        // holds a few nicks at most (its own nick's binding is not a new one).
        let already_ours = own.is_some_and(|b| b.fingerprint == fingerprint);
        if !already_ours
            && self.bindings.held_by_key(&fingerprint) >= self.config.max_bindings_per_key
        {
            return Err(RegisterError::KeyLimit);
        }
        Ok(stale)
    }

    pub(super) fn insert_user(
        &mut self,
        conn: ConnId,
        record: UserRecord,
    ) -> Result<(), RegisterError> {
        let key = record.nick().canonical();
        let fingerprint = record.certificate.rsa.fingerprint();
        let stale = self.admit(conn, &record)?;
        // Without a store, only an owner whose binding is stored and holds gets in (its
        // refresh waits); anything else would be a binding nobody recorded.
        let stored_already = self.bindings.of_nick(&key).is_some_and(|b| {
            b.onion == *record.onion()
                && b.fingerprint == fingerprint
                && b.serial == record.certificate.serial
                && self.holds(b)
        });
        if !self.store_available && !stored_already {
            return Err(RegisterError::StoreUnavailable);
        }
        if let Some(old) = stale {
            if let Some(c) = self.clients.get_mut(&old) {
                c.registered = None;
            }
            self.onions.remove(record.onion());
            self.users.remove(&key);
            self.fail(old, ServerError::Replaced);
        }
        self.onions.insert(*record.onion(), key.clone());
        if let Some(c) = self.clients.get_mut(&conn) {
            c.registered = Some(key.clone());
        }
        self.presence_changed(record.nick().clone(), conn);
        self.bind(BindingOp::Bind(Binding {
            nick: record.nick().clone(),
            onion: *record.onion(),
            fingerprint,
            last_seen: self.time(),
            serial: record.certificate.serial,
        }));
        self.users.insert(key, User { record, conn });
        Ok(())
    }

    fn remove_user(&mut self, key: &str) {
        if let Some(user) = self.users.remove(key) {
            self.onions.remove(user.record.onion());
            // The reservation counts from now, when its owner was last seen.
            self.bind(BindingOp::Bind(Binding {
                nick: user.record.nick().clone(),
                onion: *user.record.onion(),
                fingerprint: user.record.certificate.rsa.fingerprint(),
                last_seen: self.time(),
                serial: user.record.certificate.serial,
            }));
            self.presence_changed(user.record.nick().clone(), user.conn);
        }
    }

    fn send(&mut self, conn: ConnId, message: &ServerMessage) {
        // Every server message fits a frame: pages are capped at MAX_PAGE records.
        if let Ok(bytes) = encode_frame(message) {
            self.outputs
                .push_back(RegistryOutput::Transmit { conn, bytes });
        }
    }

    fn fail(&mut self, conn: ConnId, error: ServerError) {
        if self.clients.contains_key(&conn) {
            self.send(conn, &ServerMessage::Error(error));
            self.outputs.push_back(RegistryOutput::Close { conn });
            self.handle_closed(conn);
        }
    }
}
