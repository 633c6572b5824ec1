//! The world: one registry and many peers, driven by one event queue and one RNG.
//!
//! Every host is the real core state machine (`Registry`, `Peer`); the world only carries
//! bytes between them with Tor-like delays, fires their timers, plays their users
//! (the workload), injects faults, and checks invariants against what it knows is true.

mod faults;
mod hosts;
mod probes;
mod workload;

use core::time::Duration;
use std::collections::{BTreeMap, BTreeSet};

use p2pchat_core::identity::{Fingerprint, Identity};
use p2pchat_core::nick::Nick;
use p2pchat_core::peer::{Event, Peer, PeerState};
use p2pchat_core::registry::{Bindings, Registry};
use p2pchat_core::time::Instant;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

use crate::config::{FaultRates, SimConfig};
use crate::keys::{self, PoolError};
use crate::ledger::{Fate, Ledger, LedgerMark, Violation};
use crate::net::{Arrival, End, Host, Network};
use crate::queue::EventQueue;
use crate::sample::Sampler;
use crate::summary::Summary;
use crate::trace::Trace;

pub use faults::FaultKind;

/// Something scheduled in the world.
#[derive(Debug)]
enum SimEvent {
    /// A piece of a stream (or its end) reaches one side.
    Arrive(Arrival),
    /// A dial gets its answer.
    ConnectAnswer(u64),
    /// A peer's core timer.
    PeerTimer { peer: usize, incarnation: u32 },
    /// The registry's core timer.
    RegistryTimer { incarnation: u32 },
    /// A peer starts for the first time.
    Join(usize),
    /// A peer's user does something.
    Act { peer: usize, incarnation: u32 },
    /// A peer's user answers a connection request.
    Decide {
        peer: usize,
        incarnation: u32,
        request: u64,
        accept: bool,
    },
    /// A crashed or departed peer comes back.
    Restart(usize),
    /// The crashed registry comes back (empty).
    RegistryRestart,
    /// A partition ends.
    Heal(u64),
    /// A latency spike ends.
    SpikeEnd,
    /// A slow registry connection reads again.
    ReadsAgain(End),
    /// The next random fault of a kind is due.
    Fault(FaultKind),
}

impl SimEvent {
    /// A stable tag and two fields for the trace digest.
    fn trace_fields(&self) -> (u8, u64, u64) {
        match *self {
            Self::Arrive(a) => (1, a.stream, a.side as u64),
            Self::ConnectAnswer(id) => (2, id, 0),
            Self::PeerTimer { peer, incarnation } => (3, peer as u64, incarnation.into()),
            Self::RegistryTimer { incarnation } => (4, incarnation.into(), 0),
            Self::Join(peer) => (5, peer as u64, 0),
            Self::Act { peer, incarnation } => (6, peer as u64, incarnation.into()),
            Self::Decide {
                peer,
                request,
                accept,
                ..
            } => (7, peer as u64, request << 1 | u64::from(accept)),
            Self::Restart(peer) => (8, peer as u64, 0),
            Self::RegistryRestart => (9, 0, 0),
            Self::Heal(id) => (10, id, 0),
            Self::SpikeEnd => (11, 0, 0),
            Self::Fault(kind) => (12, kind as u64, 0),
            Self::ReadsAgain(end) => (13, end.conn.0, end.incarnation.into()),
        }
    }
}

/// Whether the workload is still sending or the world is settling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Users act and faults happen.
    Running,
    /// No new actions or faults; everything in flight must resolve by `until`.
    Settling { until: Instant },
}

/// Where a peer is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    /// Not started yet, crashed, or left.
    Down,
    /// Running.
    Up,
    /// Shutting down gracefully.
    Leaving,
}

/// One simulated peer: its lasting identity and, while it runs, its core.
struct PeerHost {
    identity: Identity,
    fingerprint: Fingerprint,
    watch_presence: bool,
    core: Option<Peer>,
    status: Status,
    incarnation: u32,
    timer: Option<Instant>,
    registered: bool,
    /// Peers this user has discovered (from lists and presence).
    known: BTreeSet<usize>,
    /// Everything the core told this user (kept only for scripted worlds).
    log: Vec<Event>,
    /// What the core asked to store: survives crashes, restored at restart.
    disk: PeerState,
    /// Crash after this many more outputs (a crash between two outputs of a drain).
    crash_after_outputs: Option<u32>,
    /// A copy of the disk (a user's backup), with the ledger's view of it.
    backup: Option<(PeerState, LedgerMark)>,
    /// The disk refuses writes until then.
    disk_full_until: Option<Instant>,
}

impl PeerHost {
    /// A host that has not started yet, with an empty disk.
    fn new(identity: Identity, watch_presence: bool) -> Self {
        Self {
            fingerprint: identity.rsa.public().fingerprint(),
            identity,
            watch_presence,
            core: None,
            status: Status::Down,
            incarnation: 0,
            timer: None,
            registered: false,
            known: BTreeSet::new(),
            log: Vec::new(),
            disk: PeerState::default(),
            crash_after_outputs: None,
            backup: None,
            disk_full_until: None,
        }
    }
}

/// The registry host.
struct RegistryHost {
    core: Option<Registry>,
    incarnation: u32,
    timer: Option<Instant>,
    /// The bindings it stored: they survive its crashes.
    disk: Bindings,
}

/// A dial waiting for its answer.
struct PendingConnect {
    from: crate::net::End,
    target: Option<Host>,
    port: u16,
    refused: bool,
}

/// Counters of what happened.
#[derive(Debug, Default)]
struct Stats {
    events: u64,
    registrations: u64,
    handshakes: u64,
    handshakes_rejected: u64,
    requests_denied: u64,
    dials: u64,
    dials_failed: u64,
    inbound_refused: u64,
    presence_resyncs: u64,
    faults: BTreeMap<&'static str, u64>,
}

/// A deterministic simulated world.
pub struct World {
    config: SimConfig,
    now: Instant,
    sampler: Sampler,
    queue: EventQueue<SimEvent>,
    net: Network,
    registry: RegistryHost,
    peers: Vec<PeerHost>,
    by_onion: BTreeMap<String, usize>,
    by_nick: BTreeMap<Nick, usize>,
    connects: BTreeMap<u64, PendingConnect>,
    next_connect: u64,
    partitions: BTreeMap<u64, BTreeSet<usize>>,
    next_partition: u64,
    spikes: u32,
    /// Registry connections that do not read for now (presence to them is dropped).
    slow_readers: BTreeSet<End>,
    /// Requests that peer `.0` denies from peer `.1` (scripted worlds).
    deny: BTreeSet<(usize, usize)>,
    /// Hostile hosts: host index → the peer whose nick it registers with its own keys.
    impostors: BTreeMap<usize, usize>,
    phase: Phase,
    ledger: Ledger,
    stats: Stats,
    trace: Trace,
    keep_logs: bool,
    wall: std::time::Duration,
}

/// How far a run has got, for progress displays.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    /// Messages sent so far.
    pub sent: u64,
    /// Messages the workload will send.
    pub target: u64,
    /// Messages resolved (delivered, failed or lost in a crash).
    pub resolved: u64,
    /// Virtual time.
    pub virtual_ms: u64,
}

/// Latency multiplier while a spike lasts.
const SPIKE_FACTOR: u32 = 10;

impl World {
    /// Builds the world described by `config`. Peers join at random times in the join
    /// window (all at once in scripted worlds). `trace` receives a line per event.
    pub fn new(
        config: SimConfig,
        trace: Option<Box<dyn std::io::Write>>,
    ) -> Result<Self, PoolError> {
        let mut sampler = Sampler {
            rng: ChaCha20Rng::seed_from_u64(config.seed),
        };
        let mut peers = Vec::with_capacity(config.peers);
        let mut by_onion = BTreeMap::new();
        let mut by_nick = BTreeMap::new();
        for i in 0..config.peers {
            let identity = keys::identity(i, &mut sampler.rng)?;
            by_onion.insert(identity.address().hostname(), i);
            by_nick.insert(identity.nick.clone(), i);
            let watch_presence = sampler.chance(config.workload.presence_watchers);
            peers.push(PeerHost::new(identity, watch_presence));
        }
        let registry = Registry::restore(
            config.registry.clone(),
            Bindings::default(),
            &mut sampler.rng,
            Instant::ZERO,
        );
        let keep_logs = !config.workload.enabled;
        let mut world = Self {
            now: Instant::ZERO,
            sampler,
            queue: EventQueue::new(),
            net: Network::default(),
            registry: RegistryHost {
                core: Some(registry),
                incarnation: 0,
                timer: None,
                disk: Bindings::default(),
            },
            peers,
            by_onion,
            by_nick,
            connects: BTreeMap::new(),
            next_connect: 0,
            partitions: BTreeMap::new(),
            next_partition: 0,
            spikes: 0,
            slow_readers: BTreeSet::new(),
            deny: BTreeSet::new(),
            impostors: BTreeMap::new(),
            phase: Phase::Running,
            ledger: Ledger::default(),
            stats: Stats::default(),
            trace: Trace::new(trace),
            keep_logs,
            wall: Duration::ZERO,
            config,
        };
        for i in 0..world.peers.len() {
            let at = if world.config.workload.enabled {
                let window = world.config.workload.join_window;
                world.sampler.between(Duration::ZERO, window)
            } else {
                Duration::ZERO
            };
            world.queue.push(Instant::ZERO + at, SimEvent::Join(i));
        }
        world.rearm_registry();
        if world.config.workload.enabled {
            world.schedule_all_faults();
            if world.config.messages == 0 {
                world.begin_settling();
            }
        }
        Ok(world)
    }

    /// Runs the workload to its end and lets the world settle, then checks that nothing
    /// is left hanging. Returns the summary.
    pub fn run(&mut self, mut progress: impl FnMut(Progress)) -> Summary {
        let started = std::time::Instant::now();
        // A workload that cannot reach its message count (everyone gone) still ends.
        let give_up = self.now + Duration::from_secs(7 * 24 * 3600);
        loop {
            if let Phase::Settling { until } = self.phase {
                if self.ledger.pending == 0 {
                    break;
                }
                if self.queue.peek_time().is_none_or(|t| t > until) {
                    self.now = self.now.max(until);
                    self.ledger.check_settled();
                    break;
                }
            } else if self.now > give_up {
                self.begin_settling();
            }
            if !self.step() {
                break;
            }
            if self.stats.events.is_multiple_of(65_536) {
                progress(self.progress());
            }
        }
        progress(self.progress());
        self.wall += started.elapsed();
        self.summary()
    }

    /// Runs every event up to `until` (virtual), then stops there. For scripted tests.
    pub fn run_until(&mut self, until: Instant) {
        let started = std::time::Instant::now();
        while self.queue.peek_time().is_some_and(|t| t <= until) {
            self.step();
        }
        self.now = self.now.max(until);
        self.wall += started.elapsed();
    }

    /// Runs for `d` of virtual time.
    pub fn run_for(&mut self, d: Duration) {
        self.run_until(self.now + d);
    }

    /// The current virtual time.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// Processes one event. False when nothing is left.
    fn step(&mut self) -> bool {
        let Some((at, seq, event)) = self.queue.pop() else {
            return false;
        };
        self.now = self.now.max(at);
        self.stats.events += 1;
        self.ledger.step = self.stats.events;
        self.ledger.virtual_ms = self.now.as_micros() / 1000;
        let (kind, a, b) = event.trace_fields();
        if self.trace.wants_lines() {
            self.trace
                .line(self.now.as_micros(), &format!("#{seq} {event:?}"));
        }
        match event {
            SimEvent::Arrive(arrival) => self.arrive(arrival, seq, kind, a, b),
            other => {
                self.trace
                    .record(self.now.as_micros(), seq, kind, a, b, &[]);
                self.dispatch(other);
            }
        }
        true
    }

    fn dispatch(&mut self, event: SimEvent) {
        match event {
            SimEvent::Arrive(_) => {}
            SimEvent::ConnectAnswer(id) => self.connect_answer(id),
            SimEvent::PeerTimer { peer, incarnation } => self.peer_timer(peer, incarnation),
            SimEvent::RegistryTimer { incarnation } => self.registry_timer(incarnation),
            SimEvent::Join(peer) => self.start_peer(peer),
            SimEvent::Act { peer, incarnation } => self.act(peer, incarnation),
            SimEvent::Decide {
                peer,
                incarnation,
                request,
                accept,
            } => self.decide(peer, incarnation, request, accept),
            SimEvent::Restart(peer) => self.start_peer(peer),
            SimEvent::RegistryRestart => self.restart_registry(),
            SimEvent::Heal(id) => {
                self.partitions.remove(&id);
            }
            SimEvent::SpikeEnd => self.spikes = self.spikes.saturating_sub(1),
            SimEvent::ReadsAgain(end) => {
                self.slow_readers.remove(&end);
            }
            SimEvent::Fault(kind) => self.random_fault(kind),
        }
    }

    /// Stops the workload and faults; heals the network; from now on everything sent must
    /// resolve within the settle limit.
    fn begin_settling(&mut self) {
        if matches!(self.phase, Phase::Settling { .. }) {
            return;
        }
        self.phase = Phase::Settling {
            until: self.now + self.config.settle_limit,
        };
        self.partitions.clear();
        self.spikes = 0;
    }

    fn latency_factor(&self) -> u32 {
        if self.spikes > 0 { SPIKE_FACTOR } else { 1 }
    }

    fn violation(&mut self, what: String) {
        if self.trace.wants_lines() {
            self.trace
                .line(self.now.as_micros(), &format!("VIOLATION {what}"));
        }
        self.ledger.violation(what);
    }

    fn progress(&self) -> Progress {
        Progress {
            sent: self.ledger.sent_count(),
            target: self.config.messages,
            resolved: self.ledger.sent_count() - self.ledger.pending,
            virtual_ms: self.now.as_micros() / 1000,
        }
    }

    /// What happened so far.
    pub fn summary(&mut self) -> Summary {
        self.trace.flush();
        Summary {
            seed: self.config.seed,
            peers: self.config.peers,
            faults: String::new(),
            messages_sent: self.ledger.sent_count(),
            delivered: self.ledger.delivered,
            failed: self.ledger.failed,
            lost_in_crash: self.ledger.lost_in_crash,
            forgotten_by_restore: self.ledger.forgotten_by_restore,
            unresolved: self.ledger.pending,
            duplicates: self.ledger.duplicates,
            out_of_order: self.ledger.out_of_order,
            registrations: self.stats.registrations,
            handshakes: self.stats.handshakes,
            handshakes_rejected: self.stats.handshakes_rejected,
            requests_denied: self.stats.requests_denied,
            dials: self.stats.dials,
            dials_failed: self.stats.dials_failed,
            inbound_refused: self.stats.inbound_refused,
            presence_resyncs: self.stats.presence_resyncs,
            faults_injected: self.stats.faults.values().sum(),
            faults_by_kind: self
                .stats
                .faults
                .iter()
                .map(|(k, v)| ((*k).to_owned(), *v))
                .collect(),
            shared_rsa_keys: self.config.peers.saturating_sub(keys::POOL_SIZE),
            virtual_ms: self.now.as_micros() / 1000,
            wall_ms: self.wall.as_millis() as u64,
            events: self.stats.events,
            trace_digest: self.trace.digest_hex(),
            invariant_violations: self.ledger.violation_count,
            violations: self.ledger.violations.clone(),
            trace_error: self.trace.file_error.clone(),
        }
    }

    // ----- queries for scripted tests -----

    /// The nick of peer `i`.
    pub fn nick(&self, i: usize) -> Nick {
        self.peers[i].identity.nick.clone()
    }

    /// Adds a hostile host that claims peer `j`'s nick with keys of its own, and starts
    /// it (it tries to register). Returns its index, usable like a peer's.
    pub fn add_impostor(&mut self, j: usize) -> Result<usize, PoolError> {
        let index = self.peers.len();
        let real = self.peers[j].identity.nick.clone();
        let own = keys::identity(index, &mut self.sampler.rng)?;
        let identity = Identity::new(real, own.rsa, own.onion);
        self.by_onion.insert(identity.address().hostname(), index);
        self.peers.push(PeerHost::new(identity, false));
        self.impostors.insert(index, j);
        self.start_peer(index);
        Ok(index)
    }

    /// Whether `j` is a contact of peer `i` (pinned, so an impostor of `j` must fail).
    pub(super) fn knows(&self, i: usize, j: usize) -> bool {
        let nick = &self.peers[j].identity.nick;
        self.peers[i]
            .disk
            .contacts
            .get(nick)
            .is_some_and(|c| matches!(c.key, p2pchat_core::peer::ContactKey::Pinned { .. }))
    }

    /// Peer `i`'s core, while it runs.
    pub fn peer(&self, i: usize) -> Option<&Peer> {
        self.peers[i].core.as_ref()
    }

    /// Whether peer `i` is registered (as far as its core knows).
    pub fn is_registered(&self, i: usize) -> bool {
        self.peers[i].registered
    }

    /// Everything peer `i`'s core has told its user since the last call (scripted worlds).
    pub fn take_log(&mut self, i: usize) -> Vec<Event> {
        std::mem::take(&mut self.peers[i].log)
    }

    /// What became of message `number` and how many times it was shown.
    pub fn fate(&self, number: u64) -> Option<(Fate, u32)> {
        self.ledger.fate(number)
    }

    /// Invariant violations so far.
    pub fn violations(&self) -> &[Violation] {
        &self.ledger.violations
    }

    /// The fault rates in force (change them to script faults such as refused dials).
    pub fn faults_mut(&mut self) -> &mut FaultRates {
        &mut self.config.faults
    }

    /// Makes peer `who` deny chat requests from peer `from` (scripted worlds).
    pub fn deny_requests(&mut self, who: usize, from: usize) {
        self.deny.insert((who, from));
    }

    /// Number of users the registry lists right now.
    pub fn registry_users(&self) -> usize {
        self.registry.core.as_ref().map_or(0, Registry::user_count)
    }
}
