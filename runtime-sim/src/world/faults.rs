//! Faults: as verbs for scripted tests, and drawn at random at the configured rates.

use core::time::Duration;
use std::collections::BTreeSet;

use super::{Phase, SimEvent, Status, World};
use crate::keys;
use crate::net::Host;
use p2pchat_core::time::Instant;

/// The kinds of random fault (dial faults are drawn per dial instead).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// A stream is reset mid-message.
    StreamReset = 1,
    /// A peer crashes (and restarts later).
    Crash = 2,
    /// The peers split into two groups that cannot reach each other (healed later).
    Partition = 3,
    /// The registry crashes (and restarts later, empty).
    RegistryCrash = 4,
    /// Every latency is multiplied for a while.
    LatencySpike = 5,
    /// A hostile host claims a bound peer's nick with other keys and dials its contacts.
    Impostor = 6,
    /// A presence watcher's registry connection stops reading for a while.
    SlowReader = 7,
    /// Someone says `Hello` to a peer under a contact's (or a stranger's) nick.
    Prober = 8,
    /// A copy of a peer's disk is taken, or put back (a restored backup).
    Restore = 9,
    /// A peer's disk refuses writes for a while.
    DiskFull = 10,
}

const ALL_KINDS: [FaultKind; 10] = [
    FaultKind::StreamReset,
    FaultKind::Crash,
    FaultKind::Partition,
    FaultKind::RegistryCrash,
    FaultKind::LatencySpike,
    FaultKind::Impostor,
    FaultKind::SlowReader,
    FaultKind::Prober,
    FaultKind::Restore,
    FaultKind::DiskFull,
];

/// Most contacts of the real peer an impostor dials.
const IMPOSTOR_DIALS: usize = 3;

const HOUR: Duration = Duration::from_secs(3600);

impl World {
    /// Crashes peer `i`: it vanishes without a word; its streams close. Its disk stays:
    /// what its core asked to store before the crash is there when it restarts.
    pub fn crash(&mut self, i: usize) {
        let host = &mut self.peers[i];
        if host.core.is_none() {
            return;
        }
        host.core = None;
        host.status = Status::Down;
        host.registered = false;
        host.timer = None;
        host.crash_after_outputs = None;
        self.count_fault("crash");
        for end in self.net.streams_of(Host::Peer(i)) {
            self.close_end(end);
        }
    }

    /// Crashes peer `i` and has it restart 5 to 60 s later.
    pub(super) fn crash_and_restart_later(&mut self, i: usize) {
        self.crash(i);
        let down = self
            .sampler
            .between(Duration::from_secs(5), Duration::from_secs(60));
        self.queue.push(self.now + down, SimEvent::Restart(i));
    }

    /// Takes a copy of peer `i`'s disk, as a user's backup.
    pub fn take_backup(&mut self, i: usize) {
        let copy = (self.peers[i].disk.clone(), self.ledger.mark(i));
        self.peers[i].backup = Some(copy);
        self.count_fault("backup_taken");
    }

    /// Crashes peer `i`, puts its disk back to the last copy taken (if any), and has it
    /// restart 5 to 60 s later: a user restoring a backup.
    pub fn put_back_backup(&mut self, i: usize) {
        let Some((disk, mark)) = self.peers[i].backup.clone() else {
            return;
        };
        self.crash_and_restart_later(i);
        self.count_fault("backup_restored");
        let queued: BTreeSet<(usize, u64)> = disk
            .outbox
            .iter()
            .flat_map(|(nick, q)| q.iter().map(move |m| (nick, m.id)))
            .filter_map(|(nick, id)| self.by_nick.get(nick).map(|j| (*j, id)))
            .collect();
        self.ledger.restored(i, &mark, &queued);
        self.peers[i].disk = disk;
    }

    /// Peer `i`'s disk refuses every write for `d`.
    pub fn fill_disk(&mut self, i: usize, d: Duration) {
        self.count_fault("disk_full");
        self.peers[i].disk_full_until = Some(self.now + d);
    }

    /// Peer `i`'s core asked to store something its full disk refuses: the core stops
    /// before anything after the write acts (nothing it did since its last stored write
    /// reaches the world), its streams close, and it starts again from its disk once the
    /// disk takes writes. This is what the real runtime does in place (it stays up,
    /// answering commands with the failure, and rebuilds its core from the store).
    pub(super) fn store_refused(&mut self, i: usize, until: Instant) {
        self.count_fault("store_refused");
        self.crash(i);
        self.queue.push(until, SimEvent::Restart(i));
    }

    /// Restarts peer `i` (after a crash or a graceful leave) with its identity.
    pub fn restart(&mut self, i: usize) {
        self.start_peer(i);
    }

    /// Peer `i` leaves gracefully: it closes its chats and unregisters.
    pub fn leave(&mut self, i: usize) {
        let now = self.now;
        let host = &mut self.peers[i];
        if host.status != Status::Up {
            return;
        }
        if let Some(core) = &mut host.core {
            host.status = Status::Leaving;
            core.shutdown(now);
        }
        self.pump_peer(i);
    }

    /// Splits `group` from every other peer until [`World::heal`]: streams between the two
    /// sides reset, and dials across fail. The registry stays reachable from both.
    pub fn partition(&mut self, group: &[usize]) -> u64 {
        let group: BTreeSet<usize> = group.iter().copied().collect();
        let id = self.next_partition;
        self.next_partition += 1;
        self.partitions.insert(id, group);
        self.count_fault("partition");
        let crossing = self.net.streams_between(|a, b| match (a, b) {
            (Host::Peer(x), Host::Peer(y)) => self.partitioned(x, y),
            _ => false,
        });
        for stream in crossing {
            self.reset_stream(stream);
        }
        id
    }

    /// Ends every partition.
    pub fn heal(&mut self) {
        self.partitions.clear();
    }

    /// Crashes the registry: every registry connection closes; dials to it fail until
    /// [`World::restart_registry_now`].
    pub fn crash_registry(&mut self) {
        if self.registry.core.take().is_none() {
            return;
        }
        self.registry.timer = None;
        self.count_fault("registry_crash");
        for end in self.net.streams_of(Host::Registry) {
            self.close_end(end);
        }
    }

    /// Crashes the registry and destroys its disk: it comes back knowing no binding (a
    /// wiped or hostile registry).
    pub fn wipe_registry(&mut self) {
        self.crash_registry();
        self.registry.disk = p2pchat_core::registry::Bindings::default();
    }

    /// Brings the registry back, with the bindings on its disk.
    pub fn restart_registry_now(&mut self) {
        self.restart_registry();
    }

    /// Multiplies every latency by 10 for `d`.
    pub fn latency_spike(&mut self, d: Duration) {
        self.spikes += 1;
        self.count_fault("latency_spike");
        self.queue.push(self.now + d, SimEvent::SpikeEnd);
    }

    /// Peer `i`'s registry connection stops reading for `d`: the registry's runtime drops
    /// the presence frames it would queue there (telling the registry, which sends
    /// `Resync` once the connection reads again), as a real runtime does for a client whose
    /// queue is half full.
    pub fn slow_reader(&mut self, i: usize, d: Duration) {
        let ends = self.net.registry_ends_of(i);
        if ends.is_empty() {
            return;
        }
        self.count_fault("slow_reader");
        for end in ends {
            self.slow_readers.insert(end);
            self.queue.push(self.now + d, SimEvent::ReadsAgain(end));
        }
    }

    /// Resets every stream between peers `a` and `b` mid-message.
    pub fn reset_streams_between(&mut self, a: usize, b: usize) {
        let streams = self.net.streams_between(|x, y| {
            (x, y) == (Host::Peer(a), Host::Peer(b)) || (x, y) == (Host::Peer(b), Host::Peer(a))
        });
        for stream in streams {
            self.reset_stream(stream);
        }
    }

    fn reset_stream(&mut self, stream: u64) {
        self.count_fault("stream_reset");
        let delay = self
            .sampler
            .latency(&self.config.stream_latency, self.latency_factor());
        let sampler = &mut self.sampler;
        let arrivals = self
            .net
            .reset(stream, self.now, delay, |len| sampler.below(len));
        for (at, arrival) in arrivals {
            self.queue.push(at, SimEvent::Arrive(arrival));
        }
    }

    /// Whether peers `a` and `b` are on different sides of a partition.
    pub(super) fn partitioned(&self, a: usize, b: usize) -> bool {
        self.partitions
            .values()
            .any(|g| g.contains(&a) != g.contains(&b))
    }

    pub(super) fn count_fault(&mut self, kind: &'static str) {
        *self.stats.faults.entry(kind).or_default() += 1;
    }

    /// Schedules the first random fault of every kind with a non-zero rate.
    pub(super) fn schedule_all_faults(&mut self) {
        for kind in ALL_KINDS {
            self.schedule_fault(kind);
        }
    }

    /// The mean time to the next fault of `kind` at the current size of the world.
    fn fault_interval(&self, kind: FaultKind) -> Option<Duration> {
        let f = &self.config.faults;
        let per_hour = match kind {
            FaultKind::StreamReset => {
                f.stream_resets_per_stream_hour * self.net.len().max(self.peers.len()) as f64
            }
            FaultKind::Crash => f.crashes_per_peer_hour * self.peers.len() as f64,
            FaultKind::Partition => f.partitions_per_hour,
            FaultKind::RegistryCrash => f.registry_crashes_per_hour,
            FaultKind::LatencySpike => f.latency_spikes_per_hour,
            FaultKind::Impostor => f.impostors_per_hour,
            FaultKind::SlowReader => f.slow_readers_per_hour,
            FaultKind::Prober => f.probers_per_hour,
            FaultKind::Restore => f.restores_per_peer_hour * self.peers.len() as f64,
            FaultKind::DiskFull => f.disk_fills_per_hour,
        };
        (per_hour > 0.0).then(|| HOUR.div_f64(per_hour))
    }

    fn schedule_fault(&mut self, kind: FaultKind) {
        if let Some(mean) = self.fault_interval(kind) {
            let gap = self.sampler.exponential(mean).max(Duration::from_millis(1));
            self.queue.push(self.now + gap, SimEvent::Fault(kind));
        }
    }

    /// A random fault is due: inject it (while the workload runs) and schedule the next.
    pub(super) fn random_fault(&mut self, kind: FaultKind) {
        if self.phase != Phase::Running {
            return;
        }
        match kind {
            FaultKind::StreamReset => {
                if self.net.len() > 0 {
                    let n = self.sampler.below(self.net.len());
                    if let Some(stream) = self.net.nth_stream(n) {
                        self.reset_stream(stream);
                    }
                }
            }
            FaultKind::Crash => {
                let i = self.sampler.below(self.peers.len());
                if self.peers[i].core.is_some() {
                    // Half the crashes strike now, between drains; half in the middle of
                    // one of the next drains, between two of its outputs (between a store
                    // and the transmit it precedes, among others).
                    if self.sampler.chance(0.5) {
                        self.crash_and_restart_later(i);
                    } else {
                        self.peers[i].crash_after_outputs = Some(self.sampler.below(6) as u32);
                    }
                }
            }
            FaultKind::Partition => {
                let group: Vec<usize> = (0..self.peers.len())
                    .filter(|_| self.sampler.chance(1.0 / 3.0))
                    .collect();
                if !group.is_empty() {
                    let id = self.partition(&group);
                    let lasts = self
                        .sampler
                        .between(Duration::from_secs(10), Duration::from_secs(90));
                    self.queue.push(self.now + lasts, SimEvent::Heal(id));
                }
            }
            FaultKind::RegistryCrash => {
                if self.registry.core.is_some() {
                    self.crash_registry();
                    let down = self
                        .sampler
                        .between(Duration::from_secs(5), Duration::from_secs(30));
                    self.queue.push(self.now + down, SimEvent::RegistryRestart);
                }
            }
            FaultKind::LatencySpike => {
                let lasts = self
                    .sampler
                    .between(Duration::from_secs(5), Duration::from_secs(30));
                self.latency_spike(lasts);
            }
            FaultKind::Impostor => self.random_impostor(),
            FaultKind::Prober => self.random_probe(),
            FaultKind::Restore => {
                let i = self.sampler.below(self.config.peers);
                if self.peers[i].core.is_some() {
                    if self.peers[i].backup.is_some() && self.sampler.chance(0.5) {
                        self.put_back_backup(i);
                    } else {
                        self.take_backup(i);
                    }
                }
            }
            FaultKind::DiskFull => {
                let i = self.sampler.below(self.config.peers);
                let lasts = self
                    .sampler
                    .between(Duration::from_secs(5), Duration::from_secs(60));
                self.fill_disk(i, lasts);
            }
            FaultKind::SlowReader => {
                let watchers: Vec<usize> = (0..self.config.peers)
                    .filter(|&i| self.peers[i].watch_presence && self.peers[i].core.is_some())
                    .collect();
                if !watchers.is_empty() {
                    let i = watchers[self.sampler.below(watchers.len())];
                    let lasts = self
                        .sampler
                        .between(Duration::from_secs(5), Duration::from_secs(60));
                    self.slow_reader(i, lasts);
                }
            }
        }
        self.schedule_fault(kind);
    }

    /// A hostile host claims the nick of a random peer that the registry has bound (it
    /// registered), with keys of its own, and dials up to [`IMPOSTOR_DIALS`] of that peer's
    /// contacts directly. The registry must refuse its registration (the binding holds),
    /// and every contact must refuse its handshake (the pinned key differs): the checks in
    /// `hosts.rs` turn either failure into a violation. At most a quarter of the world's
    /// size are impostors, and only while every host still has its own RSA key.
    fn random_impostor(&mut self) {
        let real = self.config.peers;
        if self.impostors.len() >= (real / 4).max(1) || self.peers.len() >= keys::POOL_SIZE {
            return;
        }
        let j = self.sampler.below(real);
        let nick = self.peers[j].identity.nick.clone();
        let bound = self
            .registry
            .disk
            .of_nick(&nick.canonical())
            .is_some_and(|b| b.fingerprint == self.peers[j].fingerprint);
        if !bound {
            return;
        }
        let Ok(impostor) = self.add_impostor(j) else {
            return;
        };
        self.count_fault("impostor");
        let contacts: Vec<usize> = (0..real).filter(|&k| k != j && self.knows(k, j)).collect();
        for _ in 0..IMPOSTOR_DIALS.min(contacts.len()) {
            let k = contacts[self.sampler.below(contacts.len())];
            let _ = self.connect(impostor, k);
        }
    }
}
