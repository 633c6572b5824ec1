//! What a simulated world looks like: size, workload, latencies and fault rates.

use core::fmt;
use core::str::FromStr;
use core::time::Duration;

use p2pchat_core::peer::{AcceptPolicy, PeerConfig};
use p2pchat_core::registry::RegistryConfig;

/// A latency distribution: log-normal around `median`, clamped to `[min, max]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Latency {
    /// The typical value.
    pub median: Duration,
    /// Spread: the standard deviation of the natural logarithm.
    pub sigma: f64,
    /// Shortest value drawn.
    pub min: Duration,
    /// Longest value drawn.
    pub max: Duration,
}

/// How often each fault happens. Zero turns a fault off.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FaultRates {
    /// Probability that a dial is refused (SOCKS error) after the usual connect delay.
    pub connect_refused: f64,
    /// Probability that a dial is never answered (the core's dial timeout ends it).
    pub connect_timeout: f64,
    /// Streams reset mid-message, per open stream per hour.
    pub stream_resets_per_stream_hour: f64,
    /// Peer crashes (and later restarts), per peer per hour.
    pub crashes_per_peer_hour: f64,
    /// Partitions between two random groups of peers, per hour.
    pub partitions_per_hour: f64,
    /// Registry crashes (and restarts, empty), per hour.
    pub registry_crashes_per_hour: f64,
    /// Latency spikes (every latency multiplied for a while), per hour.
    pub latency_spikes_per_hour: f64,
    /// Impostors, per hour: a hostile host claims the nick of a peer the registry has
    /// bound, with keys of its own, and dials that peer's contacts.
    pub impostors_per_hour: f64,
    /// Slow readers, per hour: a presence watcher's registry connection stops reading
    /// for a while, so the registry drops its presence and later sends it `Resync`.
    pub slow_readers_per_hour: f64,
    /// Probers, per hour: a `Hello` to a random peer under one of its contacts' nicks (or
    /// a stranger's), proving a key of its own, never proving it, or with a copied
    /// certificate (`world/probes.rs`).
    pub probers_per_hour: f64,
    /// Disk restores, per peer per hour: the first takes a copy of a peer's disk, a later
    /// one (half the time) crashes the peer and puts the copy back, as a user restoring a
    /// backup does.
    pub restores_per_peer_hour: f64,
    /// Full disks, per hour: a random peer's disk refuses every write for 5 to 60 s. A
    /// write refused stops the peer's core before anything after it acts (as the real
    /// runtime pauses), and it starts again from its disk once the disk takes writes.
    pub disk_fills_per_hour: f64,
}

impl FaultRates {
    /// No faults at all.
    pub const NONE: Self = Self {
        connect_refused: 0.0,
        connect_timeout: 0.0,
        stream_resets_per_stream_hour: 0.0,
        crashes_per_peer_hour: 0.0,
        partitions_per_hour: 0.0,
        registry_crashes_per_hour: 0.0,
        latency_spikes_per_hour: 0.0,
        impostors_per_hour: 0.0,
        slow_readers_per_hour: 0.0,
        probers_per_hour: 0.0,
        restores_per_peer_hour: 0.0,
        disk_fills_per_hour: 0.0,
    };

    /// A flaky but usable network: a few refused dials and resets, rare crashes.
    pub const LIGHT: Self = Self {
        connect_refused: 0.02,
        connect_timeout: 0.005,
        stream_resets_per_stream_hour: 0.5,
        crashes_per_peer_hour: 0.1,
        partitions_per_hour: 2.0,
        registry_crashes_per_hour: 0.0,
        latency_spikes_per_hour: 4.0,
        impostors_per_hour: 0.0,
        slow_readers_per_hour: 0.0,
        probers_per_hour: 0.0,
        restores_per_peer_hour: 0.0,
        disk_fills_per_hour: 0.0,
    };

    /// Everything goes wrong, often.
    pub const HEAVY: Self = Self {
        connect_refused: 0.1,
        connect_timeout: 0.03,
        stream_resets_per_stream_hour: 12.0,
        crashes_per_peer_hour: 6.0,
        partitions_per_hour: 60.0,
        registry_crashes_per_hour: 20.0,
        latency_spikes_per_hour: 60.0,
        impostors_per_hour: 30.0,
        slow_readers_per_hour: 60.0,
        probers_per_hour: 120.0,
        restores_per_peer_hour: 3.0,
        disk_fills_per_hour: 30.0,
    };
}

/// The named fault levels of `p2pchat sim --faults`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultLevel {
    /// [`FaultRates::NONE`].
    None,
    /// [`FaultRates::LIGHT`].
    Light,
    /// [`FaultRates::HEAVY`].
    Heavy,
}

impl FaultLevel {
    /// The rates of this level.
    pub fn rates(self) -> FaultRates {
        match self {
            Self::None => FaultRates::NONE,
            Self::Light => FaultRates::LIGHT,
            Self::Heavy => FaultRates::HEAVY,
        }
    }
}

impl fmt::Display for FaultLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::None => "none",
            Self::Light => "light",
            Self::Heavy => "heavy",
        })
    }
}

/// A fault level name that is not `none`, `light` or `heavy`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown fault level {0:?}: use none, light or heavy")]
pub struct UnknownFaultLevel(pub String);

impl FromStr for FaultLevel {
    type Err = UnknownFaultLevel;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "none" => Ok(Self::None),
            "light" => Ok(Self::Light),
            "heavy" => Ok(Self::Heavy),
            other => Err(UnknownFaultLevel(other.to_owned())),
        }
    }
}

/// What the simulated users do.
#[derive(Debug, Clone)]
pub struct Workload {
    /// Whether users act on their own. Off for scripted tests, which issue commands.
    pub enabled: bool,
    /// Mean time between two actions of one user.
    pub think_time: Duration,
    /// Peers join over this long at the start.
    pub join_window: Duration,
    /// Most chats a user opens on their own (others may still open chats with them).
    pub chats_per_user: usize,
    /// Probability that a user denies an incoming chat request.
    pub deny_probability: f64,
    /// Probability, per action, that a user leaves (gracefully) for a while.
    pub leave_probability: f64,
    /// Probability, per action, that a user closes one of their chats.
    pub close_probability: f64,
    /// Chance that an action writes to a random contact, whether or not a chat with it is
    /// open or it is online (the message waits in the outbox).
    pub contact_message_probability: f64,
    /// Fraction of users who watch presence (each push costs the registry a frame per
    /// watcher).
    pub presence_watchers: f64,
}

impl Default for Workload {
    fn default() -> Self {
        Self {
            enabled: true,
            think_time: Duration::from_secs(4),
            join_window: Duration::from_secs(10),
            chats_per_user: 2,
            deny_probability: 0.1,
            leave_probability: 0.004,
            close_probability: 0.02,
            contact_message_probability: 0.15,
            presence_watchers: 0.05,
        }
    }
}

/// A whole simulated world.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// The one seed every choice derives from.
    pub seed: u64,
    /// Number of peers.
    pub peers: usize,
    /// Messages the workload sends before it winds down.
    pub messages: u64,
    /// Fault rates while the workload runs.
    pub faults: FaultRates,
    /// Time to open a stream to an onion service.
    pub connect_latency: Latency,
    /// One-way delay of data on an open stream.
    pub stream_latency: Latency,
    /// Probability that a write arrives in several pieces.
    pub split_probability: f64,
    /// The users.
    pub workload: Workload,
    /// Each peer's core configuration (the accept policy is forced to `Ask`: the workload
    /// answers requests).
    pub peer: PeerConfig,
    /// The registry's configuration.
    pub registry: RegistryConfig,
    /// After the workload, how long everything may take to settle before a message still
    /// unresolved counts as hanging.
    pub settle_limit: Duration,
}

impl SimConfig {
    /// A world of `peers` peers sending `messages` messages under `faults`, seeded `seed`.
    pub fn new(seed: u64, peers: usize, messages: u64, faults: FaultLevel) -> Self {
        let peer = PeerConfig {
            accept_policy: AcceptPolicy::Ask,
            ..PeerConfig::default()
        };
        Self {
            seed,
            peers,
            messages,
            faults: faults.rates(),
            // Tor-like: an onion connect builds rendezvous circuits (seconds); data on an
            // open stream crosses six relays each way (round trips of hundreds of ms).
            connect_latency: Latency {
                median: Duration::from_millis(2500),
                sigma: 0.5,
                min: Duration::from_millis(500),
                max: Duration::from_secs(30),
            },
            stream_latency: Latency {
                median: Duration::from_millis(150),
                sigma: 0.4,
                min: Duration::from_millis(30),
                max: Duration::from_secs(5),
            },
            split_probability: 0.3,
            workload: Workload::default(),
            peer,
            registry: RegistryConfig::default(),
            settle_limit: Duration::from_secs(30 * 60),
        }
    }

    /// A world for scripted tests: no workload, no random faults.
    pub fn scripted(seed: u64, peers: usize) -> Self {
        let mut config = Self::new(seed, peers, 0, FaultLevel::None);
        config.workload.enabled = false;
        config.workload.deny_probability = 0.0;
        config.workload.presence_watchers = 1.0;
        config
    }
}
