//! The one in-memory world of the core's tests and fuzz harnesses, like quinn's `Pair`:
//! a registry, peers, and raw registry clients, joined by links that carry bytes in
//! order. Time is virtual; nothing here sleeps, dials or touches a file.
//!
//! Peers are test identities (`test_keys`); what each peer asks to store is kept on its
//! `disks` entry, what the registry asks to store in `registry_stored`. A raw client is a
//! registry connection with no peer behind it: the test sends it `ClientMessage`s and
//! reads the decoded `ServerMessage`s (`connect_client`, `client_send`, `client_inbox`).
//!
//! Every loop is bounded: a world that does not settle is a bug, and panics saying so.

// The fuzz build uses only part of the world; the tests use all of it.
#![cfg_attr(not(test), allow(dead_code))]

use core::time::Duration;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

use rand_chacha::ChaCha20Rng;

use crate::conn::ConnId;
use crate::frame::{FrameDecoder, decode_body, encode_frame};
use crate::identity::{Identity, OnionAddress};
use crate::nick::Nick;
use crate::peer::{ChatState, Event, Input, Output, Peer, PeerConfig, PeerState, Target, WallTime};
use crate::registry::{
    BindingOp, ClientMessage, Registration, Registry, RegistryConfig, RegistryOutput, ServerMessage,
};
use crate::test_keys;
use crate::time::Instant;

/// Most steps `run` (or `advance`) takes before the world counts as not settling.
const MAX_STEPS: usize = 100_000;

/// Who owns an end of a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Host {
    Registry,
    Peer(usize),
}

/// One end of a link: its host and the host's name for the connection.
pub(crate) type End = (Host, ConnId);

/// Something on its way to an end.
pub(crate) enum Delivery {
    Connected,
    Failed(String),
    Bytes(Vec<u8>),
    Closed,
}

/// What a raw client received from the registry, decoded.
#[derive(Default)]
struct Client {
    decoder: FrameDecoder,
    inbox: Vec<ServerMessage>,
}

/// A registry, peers and raw registry clients in memory.
pub(crate) struct World {
    pub(crate) now: Instant,
    pub(crate) registry: Registry,
    pub(crate) peers: Vec<Peer>,
    /// Every event each peer emitted and nobody took yet.
    pub(crate) events: Vec<Vec<Event>>,
    /// What each peer asked to store, applied in order.
    pub(crate) disks: Vec<PeerState>,
    /// Every binding change the registry asked to store, in order.
    pub(crate) registry_stored: Vec<BindingOp>,
    /// Raw client connections the registry closed.
    pub(crate) registry_closed: Vec<ConnId>,
    /// Signs raw clients' registrations.
    pub(crate) rng: ChaCha20Rng,
    pub(crate) links: BTreeMap<End, End>,
    pub(crate) queue: VecDeque<(End, Delivery)>,
    /// Every byte each end sent, in order (for replay attacks).
    pub(crate) sent: BTreeMap<End, Vec<u8>>,
    /// Flip a byte in the next frame this peer sends on a peer connection.
    pub(crate) tamper_next: Option<usize>,
    /// Peers that refuse every inbound connection (as if not running).
    pub(crate) offline: Vec<bool>,
    /// The registry's answers are lost (it went silent without closing).
    pub(crate) registry_silent: bool,
    /// Registry connections that read too slowly for presence: their presence frames are
    /// dropped (and the registry told), as a runtime does when a queue is well filled.
    pub(crate) slow_readers: BTreeSet<ConnId>,
    /// Every dial each peer made, in order.
    pub(crate) dials: Vec<(usize, Target)>,
    /// The registry's onion address, which registrations name.
    registry_onion: Option<OnionAddress>,
    clients: BTreeMap<ConnId, Client>,
}

impl World {
    /// A default registry and one peer per nick (test identity `i` for the `i`th nick).
    pub(crate) fn new(nicks: &[&str], config: PeerConfig) -> Self {
        Self::with_registry(RegistryConfig::default(), nicks, config)
    }

    /// A registry with `config` and no peers: for raw clients.
    pub(crate) fn registry_only(config: RegistryConfig) -> Self {
        Self::with_registry(config, &[], PeerConfig::default())
    }

    /// A registry with `registry_config` and one peer per nick.
    pub(crate) fn with_registry(
        registry_config: RegistryConfig,
        nicks: &[&str],
        config: PeerConfig,
    ) -> Self {
        let mut rng = test_keys::rng(7);
        let registry_onion = registry_config.onion;
        let registry = Registry::new(registry_config, &mut rng);
        let peers = nicks
            .iter()
            .enumerate()
            .map(|(i, n)| {
                Peer::new(
                    config.clone(),
                    test_keys::identity(i, n),
                    &mut rng,
                    Instant::ZERO,
                )
            })
            .collect();
        Self {
            now: Instant::ZERO,
            registry,
            peers,
            events: vec![vec![]; nicks.len()],
            disks: vec![PeerState::default(); nicks.len()],
            registry_stored: Vec::new(),
            registry_closed: Vec::new(),
            rng,
            links: BTreeMap::new(),
            queue: VecDeque::new(),
            sent: BTreeMap::new(),
            tamper_next: None,
            offline: vec![false; nicks.len()],
            registry_silent: false,
            slow_readers: BTreeSet::new(),
            dials: Vec::new(),
            registry_onion,
            clients: BTreeMap::new(),
        }
    }

    pub(crate) fn nick(&self, i: usize) -> Nick {
        self.peers[i].identity().nick.clone()
    }

    /// Runs until nothing is left to deliver.
    pub(crate) fn run(&mut self) {
        for _ in 0..MAX_STEPS {
            let mut progressed = self.drain_outputs();
            if let Some((end, d)) = self.queue.pop_front() {
                progressed = true;
                self.deliver(end, d);
            }
            if !progressed {
                return;
            }
        }
        panic!("the world did not settle within {MAX_STEPS} steps");
    }

    /// Advances virtual time by `d`, firing every timer on the way.
    pub(crate) fn advance(&mut self, d: Duration) {
        let end = self.now + d;
        for _ in 0..MAX_STEPS {
            self.run();
            let next = self
                .peers
                .iter()
                .filter_map(Peer::poll_timeout)
                .chain(self.registry.poll_timeout())
                .filter(|t| *t <= end)
                .min();
            let Some(t) = next else {
                self.now = end;
                return;
            };
            self.now = self.now.max(t);
            for p in &mut self.peers {
                if p.poll_timeout().is_some_and(|x| x <= self.now) {
                    p.handle_timeout(self.now);
                }
            }
            self.registry.handle_timeout(self.now);
        }
        panic!("timers kept firing: more than {MAX_STEPS} before {end:?}");
    }

    /// Carries out every output of every host. Returns whether there was any.
    pub(crate) fn drain_outputs(&mut self) -> bool {
        let mut progressed = false;
        for i in 0..self.peers.len() {
            for _ in 0..MAX_STEPS {
                let Some(out) = self.peers[i].poll_output() else {
                    break;
                };
                progressed = true;
                self.peer_output(i, out);
            }
        }
        for _ in 0..MAX_STEPS {
            let Some(out) = self.registry.poll_output() else {
                break;
            };
            progressed = true;
            match out {
                RegistryOutput::Transmit { conn, bytes } => {
                    self.transmit((Host::Registry, conn), bytes)
                }
                RegistryOutput::Presence { conn, .. } if self.slow_readers.contains(&conn) => {
                    self.registry.handle_presence_dropped(conn)
                }
                RegistryOutput::Presence { conn, bytes } => {
                    self.transmit((Host::Registry, conn), bytes)
                }
                RegistryOutput::Close { conn } => self.close((Host::Registry, conn)),
                RegistryOutput::Store(op) => self.registry_stored.push(op),
            }
        }
        progressed
    }

    pub(crate) fn peer_output(&mut self, i: usize, out: Output) {
        match out {
            Output::Connect { conn, target } => {
                self.dials.push((i, target.clone()));
                let from = (Host::Peer(i), conn);
                let to = match target {
                    Target::Registry => self
                        .registry
                        .accept_connection(self.now)
                        .ok()
                        .map(|c| (Host::Registry, c)),
                    Target::Peer { onion, port } => self
                        .peers
                        .iter()
                        .position(|p| p.identity().address() == onion && p.port() == port)
                        .filter(|j| !self.offline[*j])
                        .and_then(|j| {
                            self.peers[j]
                                .accept_incoming(self.now)
                                .ok()
                                .map(|c| (Host::Peer(j), c))
                        }),
                };
                match to {
                    Some(to) => {
                        self.links.insert(from, to);
                        self.links.insert(to, from);
                        self.queue.push_back((from, Delivery::Connected));
                    }
                    None => self
                        .queue
                        .push_back((from, Delivery::Failed("connection refused".into()))),
                }
            }
            Output::Transmit { conn, mut bytes } => {
                if self.tamper_next == Some(i) && bytes.len() > 40 {
                    self.tamper_next = None;
                    let last = bytes.len() - 1;
                    bytes[last] ^= 0x80;
                }
                self.transmit((Host::Peer(i), conn), bytes)
            }
            Output::Close { conn } => self.close((Host::Peer(i), conn)),
            Output::Event(e) => self.events[i].push(e),
            Output::Store(op) => self.disks[i].apply(&op),
        }
    }

    pub(crate) fn transmit(&mut self, from: End, bytes: Vec<u8>) {
        if from.0 == Host::Registry {
            if self.registry_silent {
                return;
            }
            if let Some(client) = self.clients.get_mut(&from.1) {
                let mut input = &bytes[..];
                loop {
                    match client.decoder.decode(&mut input) {
                        Ok(Some(body)) => match decode_body(&body) {
                            Ok(message) => client.inbox.push(message),
                            Err(e) => panic!("the registry sent an undecodable message: {e}"),
                        },
                        Ok(None) => break,
                        Err(e) => panic!("the registry sent a bad frame: {e}"),
                    }
                }
                return;
            }
        }
        self.sent.entry(from).or_default().extend_from_slice(&bytes);
        if let Some(to) = self.links.get(&from) {
            self.queue.push_back((*to, Delivery::Bytes(bytes)));
        }
    }

    pub(crate) fn close(&mut self, from: End) {
        // A raw client keeps its inbox after the close: the test may still read it.
        if from.0 == Host::Registry && self.clients.contains_key(&from.1) {
            self.registry_closed.push(from.1);
            return;
        }
        if let Some(to) = self.links.remove(&from) {
            self.links.remove(&to);
            self.queue.push_back((to, Delivery::Closed));
        }
    }

    pub(crate) fn deliver(&mut self, (host, conn): End, d: Delivery) {
        let now = self.now;
        match host {
            Host::Registry => match d {
                Delivery::Bytes(b) => self.registry.handle_received(now, conn, &b),
                Delivery::Closed => self.registry.handle_closed(conn),
                Delivery::Connected | Delivery::Failed(_) => {}
            },
            Host::Peer(i) => {
                let input = match &d {
                    Delivery::Connected => Input::Connected { conn },
                    Delivery::Failed(r) => Input::ConnectFailed {
                        conn,
                        reason: r.clone(),
                    },
                    Delivery::Bytes(b) => Input::Received { conn, bytes: b },
                    Delivery::Closed => Input::Closed { conn },
                };
                self.peers[i].handle_input(now, input);
            }
        }
    }

    /// Puts a new peer with `identity` in slot `i` (the old one vanishes without a word).
    pub(crate) fn replace_peer(&mut self, i: usize, identity: Identity) {
        let mut rng = test_keys::rng(100 + i as u64);
        self.peers[i] = Peer::new(PeerConfig::default(), identity, &mut rng, self.now);
    }

    /// Peer `i`'s process ends and starts again, with `config`, from what it had stored
    /// (not registered yet). Its connections close, as the system closes a dead process's
    /// sockets; whatever was on the way to it is lost.
    pub(crate) fn restart_peer(&mut self, i: usize, config: PeerConfig) {
        let own: Vec<(End, End)> = self
            .links
            .iter()
            .filter(|((h, _), _)| *h == Host::Peer(i))
            .map(|(x, y)| (*x, *y))
            .collect();
        for (x, y) in own {
            self.links.remove(&x);
            self.links.remove(&y);
            self.queue.push_back((y, Delivery::Closed));
        }
        self.queue.retain(|((h, _), _)| *h != Host::Peer(i));
        let identity = self.peers[i].identity().clone();
        let mut rng = test_keys::rng(200 + i as u64);
        self.peers[i] = Peer::restore(
            config,
            identity,
            self.disks[i].clone(),
            &mut rng,
            self.now,
            WallTime(0),
        );
    }

    /// Cuts every connection between peers `a` and `b` (both sides see it close).
    pub(crate) fn cut(&mut self, a: usize, b: usize) {
        let ends: Vec<(End, End)> = self
            .links
            .iter()
            .filter(|((h, _), (g, _))| *h == Host::Peer(a) && *g == Host::Peer(b))
            .map(|(x, y)| (*x, *y))
            .collect();
        for (x, y) in ends {
            self.links.remove(&x);
            self.links.remove(&y);
            self.queue.retain(|(e, _)| *e != x && *e != y);
            self.queue.push_back((x, Delivery::Closed));
            self.queue.push_back((y, Delivery::Closed));
        }
    }

    /// Peer `a`'s end of its connection to peer `b`, if there is one.
    pub(crate) fn conn_between(&self, a: usize, b: usize) -> Option<ConnId> {
        self.links
            .iter()
            .find(|((h, _), (g, _))| *h == Host::Peer(a) && *g == Host::Peer(b))
            .map(|((_, c), _)| *c)
    }

    /// The registry's end of peer `i`'s registry connection, if it has one.
    pub(crate) fn registry_conn_of(&self, i: usize) -> Option<ConnId> {
        self.links
            .iter()
            .find(|((h, _), (g, _))| *h == Host::Peer(i) && *g == Host::Registry)
            .map(|(_, (_, c))| *c)
    }

    /// The registry (or whoever controls it) sends `message` to peer `i` on its registry
    /// connection, out of turn.
    pub(crate) fn registry_says(&mut self, i: usize, message: ServerMessage) {
        let end = self
            .links
            .iter()
            .find(|((h, _), (g, _))| *h == Host::Peer(i) && *g == Host::Registry)
            .map(|(mine, _)| *mine);
        let Some(end) = end else {
            panic!("peer {i} is not connected to the registry");
        };
        match encode_frame(&message) {
            Ok(bytes) => self.deliver(end, Delivery::Bytes(bytes)),
            Err(e) => panic!("a registry message does not encode: {e}"),
        }
    }

    /// Peer `i` registers; returns what it saw.
    pub(crate) fn register_peer(&mut self, i: usize) -> Vec<Event> {
        self.peers[i].register(self.now);
        self.run();
        self.take(i)
    }

    /// Every peer registers, and must succeed.
    pub(crate) fn register_all(&mut self) {
        for i in 0..self.peers.len() {
            self.peers[i].register(self.now);
        }
        self.run();
        for i in 0..self.peers.len() {
            assert!(
                self.take(i).contains(&Event::Registered),
                "peer {i} not registered"
            );
        }
    }

    pub(crate) fn take(&mut self, i: usize) -> Vec<Event> {
        std::mem::take(&mut self.events[i])
    }

    /// The id of the first connection request peer `i` was asked about.
    pub(crate) fn request_id(&mut self, i: usize) -> u64 {
        let request = self.events[i].iter().find_map(|e| match e {
            Event::ConnectionRequest { request, .. } => Some(*request),
            _ => None,
        });
        match request {
            Some(r) => r,
            None => panic!("peer {i} was asked about no connection request"),
        }
    }

    /// `a` opens a chat with `b`, `b` accepts.
    pub(crate) fn open_chat(&mut self, a: usize, b: usize) {
        let nb = self.nick(b);
        let na = self.nick(a);
        assert!(self.peers[a].connect(self.now, &nb).is_ok());
        self.run();
        let r = self.request_id(b);
        assert!(self.peers[b].accept(self.now, r).is_ok());
        self.run();
        assert_eq!(self.peers[a].chat_state(&nb), Some(&ChatState::Connected));
        assert_eq!(self.peers[b].chat_state(&na), Some(&ChatState::Connected));
        self.take(a);
        self.take(b);
    }

    /// A raw client connects to the registry; `None` if the registry refused.
    pub(crate) fn open_client(&mut self) -> Option<ConnId> {
        let conn = self.registry.accept_connection(self.now).ok()?;
        self.clients.insert(conn, Client::default());
        Some(conn)
    }

    /// A raw client connects and reads the registry's challenge.
    pub(crate) fn connect_client(&mut self) -> (ConnId, [u8; 32]) {
        let Some(conn) = self.open_client() else {
            panic!("the registry refused a client");
        };
        match self.client_inbox(conn).as_slice() {
            [ServerMessage::Challenge { nonce }] => (conn, *nonce),
            other => panic!("expected a challenge, got {other:?}"),
        }
    }

    /// Raw bytes from a client to the registry.
    pub(crate) fn client_bytes(&mut self, conn: ConnId, bytes: &[u8]) {
        self.registry.handle_received(self.now, conn, bytes);
    }

    /// A client sends `message`; returns everything the registry sent it so far.
    pub(crate) fn client_send(
        &mut self,
        conn: ConnId,
        message: &ClientMessage,
    ) -> Vec<ServerMessage> {
        match encode_frame(message) {
            Ok(bytes) => self.client_bytes(conn, &bytes),
            Err(e) => panic!("a client message does not encode: {e}"),
        }
        self.client_inbox(conn)
    }

    /// A client closes its connection.
    pub(crate) fn close_client(&mut self, conn: ConnId) {
        self.clients.remove(&conn);
        self.registry.handle_closed(conn);
    }

    /// Everything the registry sent to a raw client since the last call. What it sent to
    /// other hosts meanwhile is delivered to them, never discarded.
    pub(crate) fn client_inbox(&mut self, conn: ConnId) -> Vec<ServerMessage> {
        self.drain_outputs();
        self.clients
            .get_mut(&conn)
            .map(|c| std::mem::take(&mut c.inbox))
            .unwrap_or_default()
    }

    /// A registration of `id` answering `nonce`, signed properly for this world's registry.
    pub(crate) fn registration(
        &mut self,
        id: &Identity,
        nonce: &[u8; 32],
        port: u16,
    ) -> Registration {
        let registry = self.registry_onion;
        self.registration_for(registry.as_ref(), id, nonce, port)
    }

    /// A registration of `id` answering `nonce`, signed for the registry at `registry`.
    pub(crate) fn registration_for(
        &mut self,
        registry: Option<&OnionAddress>,
        id: &Identity,
        nonce: &[u8; 32],
        port: u16,
    ) -> Registration {
        match Registration::signed(id, registry, nonce, port, &mut self.rng) {
            Ok(r) => r,
            Err(e) => panic!("test key cannot sign: {e}"),
        }
    }

    /// A raw client connects and registers `id` at port 7000; returns its connection and
    /// the registry's reply.
    pub(crate) fn register_client(&mut self, id: &Identity) -> (ConnId, Vec<ServerMessage>) {
        let (conn, nonce) = self.connect_client();
        let registration = self.registration(id, &nonce, 7000);
        let reply = self.client_send(conn, &ClientMessage::Register(registration));
        (conn, reply)
    }
}

/// What a prober got from a peer it sent a `Hello` to (see [`World::probe`]).
#[derive(Debug)]
pub(crate) struct Probe {
    /// The first frame the peer answered with.
    pub(crate) first: Option<crate::peer_wire::PeerFrame>,
    /// After the prober's `Finish` (if it sent one): the next frame.
    pub(crate) after_finish: Option<crate::peer_wire::PeerFrame>,
}

impl World {
    /// Someone holding `prober` opens a raw connection to peer `i` and says `Hello`; if
    /// `finish`, it answers a `Challenge` with its `Finish` (proving the key in its
    /// certificate, or failing to if it copied someone's). The peer's other outputs go
    /// on into the world as usual.
    pub(crate) fn probe(&mut self, i: usize, prober: &Identity, finish: bool) -> Probe {
        let target = self.peers[i].identity().clone();
        let expected = crate::handshake::ExpectedPeer {
            nick: target.nick.clone(),
            onion: target.address(),
            rsa: target.rsa.public().clone(),
        };
        let mut rng = test_keys::rng(300);
        let Ok((initiator, hello)) =
            crate::handshake::Initiator::start(&mut rng, prober, 9999, 1, expected)
        else {
            panic!("the prober's Hello does not encode");
        };
        let Ok(conn) = self.peers[i].accept_incoming(self.now) else {
            return Probe {
                first: None,
                after_finish: None,
            };
        };
        let now = self.now;
        self.peers[i].handle_input(
            now,
            Input::Received {
                conn,
                bytes: &hello,
            },
        );
        let first = self.raw_answer(i, conn);
        let mut after_finish = None;
        if finish && let Some(crate::peer_wire::PeerFrame::Challenge(c)) = &first {
            // A prober that copied a certificate signs with its own key: the peer must
            // find the signature wrong.
            if let Ok((frame, _)) = initiator.on_challenge(&mut rng, prober, c) {
                self.peers[i].handle_input(
                    now,
                    Input::Received {
                        conn,
                        bytes: &frame,
                    },
                );
                after_finish = self.raw_answer(i, conn);
            }
        }
        self.peers[i].handle_input(now, Input::Closed { conn });
        self.drain_outputs();
        Probe {
            first,
            after_finish,
        }
    }

    /// Drains peer `i`'s outputs: the first frame it sends on raw `conn` is returned,
    /// everything else goes into the world.
    fn raw_answer(&mut self, i: usize, conn: ConnId) -> Option<crate::peer_wire::PeerFrame> {
        let mut answer = None;
        while let Some(out) = self.peers[i].poll_output() {
            match out {
                Output::Transmit { conn: c, bytes } if c == conn => {
                    answer = answer.or_else(|| crate::frame::decode_first(&bytes));
                }
                Output::Close { conn: c } if c == conn => {}
                other => self.peer_output(i, other),
            }
        }
        answer
    }
}
