//! The runtime part of the world: what a real runtime does with sockets and timers, done
//! with virtual streams and the virtual clock. No protocol decisions are made here.

use core::time::Duration;

use p2pchat_core::conn::ConnId;
use std::collections::BTreeSet;

use p2pchat_core::peer::{
    ChatFailure, ChatState, CloseReason, ConnectionLost, Event, Input, Outcome, Output, Peer,
    StoreOp, Target, WallTime,
};
use p2pchat_core::registry::{Presence, Registry, RegistryOutput};

use super::{PendingConnect, Phase, SimEvent, Status, World};
use crate::net::{Arrival, End, Host, Segment};

/// The incarnation of the far end of a stream a core refused: no host ever has it, so
/// nothing is delivered there.
const REFUSED_INCARNATION: u32 = u32::MAX;

impl World {
    /// Starts (or restarts) peer `i` with its lasting identity, and registers it.
    pub(super) fn start_peer(&mut self, i: usize) {
        let host = &mut self.peers[i];
        if host.status != Status::Down {
            return;
        }
        let mut config = self.config.peer.clone();
        config.watch_presence = host.watch_presence;
        host.incarnation += 1;
        host.status = Status::Up;
        host.registered = false;
        host.known.clear();
        host.timer = None;
        host.crash_after_outputs = None;
        let queued: BTreeSet<(usize, u64)> = host
            .disk
            .outbox
            .iter()
            .flat_map(|(nick, q)| q.iter().map(move |m| (nick, m.id)))
            .filter_map(|(nick, id)| self.by_nick.get(nick).map(|j| (*j, id)))
            .collect();
        let mut core = Peer::restore(
            config,
            host.identity.clone(),
            host.disk.clone(),
            &mut self.sampler.rng,
            self.now,
            wall_time(self.now),
        );
        self.ledger.restarted(i, &queued);
        core.register(self.now);
        let host = &mut self.peers[i];
        host.core = Some(core);
        let incarnation = host.incarnation;
        self.pump_peer(i);
        if self.config.workload.enabled && self.phase == Phase::Running {
            self.schedule_act(i, incarnation);
        }
    }

    /// Carries out everything peer `i`'s core asks for, then re-arms its timer. A crash
    /// armed by the fault injector strikes between two outputs.
    pub(super) fn pump_peer(&mut self, i: usize) {
        loop {
            let host = &mut self.peers[i];
            if host.core.is_some() && host.crash_after_outputs == Some(0) {
                self.crash_and_restart_later(i);
                return;
            }
            let Some(output) = host.core.as_mut().and_then(Peer::poll_output) else {
                break;
            };
            if let Some(n) = &mut host.crash_after_outputs {
                *n -= 1;
            }
            self.peer_output(i, output);
        }
        let host = &mut self.peers[i];
        let next = host.core.as_ref().and_then(Peer::poll_timeout);
        if next != host.timer {
            host.timer = next;
            if let Some(at) = next {
                let incarnation = host.incarnation;
                self.queue.push(
                    at.max(self.now),
                    SimEvent::PeerTimer {
                        peer: i,
                        incarnation,
                    },
                );
            }
        }
    }

    /// Carries out one output of peer `i`'s core.
    pub(super) fn peer_output(&mut self, i: usize, output: Output) {
        let incarnation = self.peers[i].incarnation;
        let end = |conn| End {
            host: Host::Peer(i),
            incarnation,
            conn,
        };
        match output {
            Output::Connect { conn, target } => self.dial(end(conn), target),
            Output::Transmit { conn, bytes } => self.transmit(end(conn), bytes),
            Output::Close { conn } => self.close_end(end(conn)),
            Output::Event(event) => self.peer_event(i, event),
            Output::Store(op) => match self.peers[i].disk_full_until {
                Some(until) if until > self.now => self.store_refused(i, until),
                _ => self.store(i, op),
            },
        }
    }

    pub(super) fn peer_timer(&mut self, i: usize, incarnation: u32) {
        let now = self.now;
        let host = &mut self.peers[i];
        if host.incarnation != incarnation || host.timer.is_none_or(|t| t > now) {
            return;
        }
        host.timer = None;
        if let Some(core) = &mut host.core {
            core.handle_timeout(now);
        }
        self.pump_peer(i);
    }

    /// Carries out everything the registry asks for, then re-arms its timer.
    pub(super) fn pump_registry(&mut self) {
        while let Some(output) = self.registry.core.as_mut().and_then(Registry::poll_output) {
            let incarnation = self.registry.incarnation;
            let end = |conn| End {
                host: Host::Registry,
                incarnation,
                conn,
            };
            match output {
                RegistryOutput::Presence { conn, .. } if self.slow_readers.contains(&end(conn)) => {
                    if let Some(core) = self.registry.core.as_mut() {
                        core.handle_presence_dropped(conn);
                    }
                }
                RegistryOutput::Transmit { conn, bytes }
                | RegistryOutput::Presence { conn, bytes } => self.transmit(end(conn), bytes),
                RegistryOutput::Close { conn } => self.close_end(end(conn)),
                RegistryOutput::Store(op) => self.registry.disk.apply(&op),
            }
        }
        self.rearm_registry();
    }

    pub(super) fn rearm_registry(&mut self) {
        let next = self.registry.core.as_ref().and_then(Registry::poll_timeout);
        if next != self.registry.timer {
            self.registry.timer = next;
            if let Some(at) = next {
                let incarnation = self.registry.incarnation;
                self.queue
                    .push(at.max(self.now), SimEvent::RegistryTimer { incarnation });
            }
        }
    }

    pub(super) fn registry_timer(&mut self, incarnation: u32) {
        let now = self.now;
        if self.registry.incarnation != incarnation || self.registry.timer.is_none_or(|t| t > now) {
            return;
        }
        self.registry.timer = None;
        if let Some(core) = &mut self.registry.core {
            core.handle_timeout(now);
        }
        self.pump_registry();
    }

    /// The registry comes back as a new incarnation: nobody online, its bindings restored
    /// from its disk.
    pub(super) fn restart_registry(&mut self) {
        if self.registry.core.is_some() {
            return;
        }
        self.registry.incarnation += 1;
        self.registry.timer = None;
        self.registry.core = Some(Registry::restore(
            self.config.registry.clone(),
            self.registry.disk.clone(),
            &mut self.sampler.rng,
            self.now,
        ));
        self.rearm_registry();
    }

    /// Whether `end` belongs to a host incarnation that is still running.
    fn is_live(&self, end: End) -> bool {
        match end.host {
            Host::Registry => {
                self.registry.core.is_some() && self.registry.incarnation == end.incarnation
            }
            Host::Peer(i) => {
                let host = &self.peers[i];
                host.core.is_some() && host.incarnation == end.incarnation
            }
        }
    }

    /// Sends `bytes` from `end`, split into pieces that arrive one by one.
    pub(super) fn transmit(&mut self, end: End, bytes: Vec<u8>) {
        let factor = self.latency_factor();
        let mut pieces = Vec::new();
        if bytes.len() > 1 && self.sampler.chance(self.config.split_probability) {
            let cuts = 1 + self.sampler.below(3);
            let mut rest = bytes;
            for _ in 0..cuts {
                if rest.len() < 2 {
                    break;
                }
                let at = 1 + self.sampler.below(rest.len() - 1);
                let tail = rest.split_off(at);
                pieces.push((
                    self.sampler.latency(&self.config.stream_latency, factor),
                    rest,
                ));
                rest = tail;
            }
            pieces.push((
                self.sampler.latency(&self.config.stream_latency, factor),
                rest,
            ));
        } else {
            pieces.push((
                self.sampler.latency(&self.config.stream_latency, factor),
                bytes,
            ));
        }
        for (at, arrival) in self.net.send(end, self.now, pieces) {
            self.queue.push(at, SimEvent::Arrive(arrival));
        }
    }

    /// `end`'s owner closes it; the other side sees `Closed` after the data in flight.
    pub(super) fn close_end(&mut self, end: End) {
        let delay = self
            .sampler
            .latency(&self.config.stream_latency, self.latency_factor());
        if let Some((at, arrival)) = self.net.close(end, self.now, delay) {
            self.queue.push(at, SimEvent::Arrive(arrival));
        }
    }

    /// A piece of a stream arrives.
    pub(super) fn arrive(&mut self, arrival: Arrival, seq: u64, kind: u8, a: u64, b: u64) {
        let Some((end, segment)) = self.net.arrive(arrival, self.now) else {
            self.trace
                .record(self.now.as_micros(), seq, kind, a, b, b"stale");
            return;
        };
        let payload: &[u8] = match &segment {
            Segment::Bytes(bytes) => bytes,
            Segment::Fin => b"fin",
        };
        self.trace
            .record(self.now.as_micros(), seq, kind, a, b, payload);
        if !self.is_live(end) {
            return;
        }
        let now = self.now;
        match end.host {
            Host::Registry => {
                if let Some(core) = &mut self.registry.core {
                    match &segment {
                        Segment::Bytes(bytes) => core.handle_received(now, end.conn, bytes),
                        Segment::Fin => core.handle_closed(end.conn),
                    }
                }
                self.pump_registry();
            }
            Host::Peer(i) => {
                let input = match &segment {
                    Segment::Bytes(bytes) => Input::Received {
                        conn: end.conn,
                        bytes,
                    },
                    Segment::Fin => Input::Closed { conn: end.conn },
                };
                if let Some(core) = &mut self.peers[i].core {
                    core.handle_input(now, input);
                }
                self.pump_peer(i);
            }
        }
    }

    /// A peer's core asks to open a connection through "Tor".
    fn dial(&mut self, from: End, target: Target) {
        self.stats.dials += 1;
        let (target, port) = match target {
            Target::Registry => (Some(Host::Registry), 0),
            Target::Peer { onion, port } => (
                self.by_onion.get(&onion.hostname()).map(|i| Host::Peer(*i)),
                port,
            ),
        };
        let faults = self.config.faults;
        let draw = self.sampler.unit();
        let refused = draw < faults.connect_refused;
        let id = self.next_connect;
        self.next_connect += 1;
        if !refused && draw < faults.connect_refused + faults.connect_timeout {
            // Never answered: the core's own dial timeout must end it.
            self.count_fault("connect_timeout");
            return;
        }
        if refused {
            self.count_fault("connect_refused");
        }
        self.connects.insert(
            id,
            PendingConnect {
                from,
                target,
                port,
                refused,
            },
        );
        let delay = self
            .sampler
            .latency(&self.config.connect_latency, self.latency_factor());
        self.queue
            .push(self.now + delay, SimEvent::ConnectAnswer(id));
    }

    /// A dial is answered: a stream to the target, or a SOCKS-style failure.
    pub(super) fn connect_answer(&mut self, id: u64) {
        let Some(pending) = self.connects.remove(&id) else {
            return;
        };
        if !self.is_live(pending.from) {
            return;
        }
        let Host::Peer(from) = pending.from.host else {
            return;
        };
        let accepted = if pending.refused {
            Err("SOCKS5 error: general SOCKS server failure (connection refused)")
        } else {
            self.accept_at(from, pending.target, pending.port)
        };
        let now = self.now;
        match accepted {
            Ok(accepted) => {
                // A stream the target's core refused opens all the same, as over Tor: the
                // dialer sees `Connected`, then `Closed` once the target closes its end.
                let to = accepted.unwrap_or(End {
                    host: pending.target.unwrap_or(Host::Registry),
                    incarnation: REFUSED_INCARNATION,
                    conn: ConnId(id),
                });
                self.net.open(pending.from, to);
                if let Some(core) = &mut self.peers[from].core {
                    core.handle_input(
                        now,
                        Input::Connected {
                            conn: pending.from.conn,
                        },
                    );
                }
                match (accepted, to.host) {
                    (None, _) => {
                        self.stats.inbound_refused += 1;
                        self.close_end(to);
                    }
                    (Some(_), Host::Peer(j)) => self.pump_peer(j),
                    (Some(_), Host::Registry) => self.pump_registry(),
                }
            }
            Err(reason) => {
                self.stats.dials_failed += 1;
                if let Some(core) = &mut self.peers[from].core {
                    core.handle_input(
                        now,
                        Input::ConnectFailed {
                            conn: pending.from.conn,
                            reason: reason.to_owned(),
                        },
                    );
                }
            }
        }
        self.pump_peer(from);
    }

    /// The target's side of a dial from peer `from`: its new connection end; `None` if the
    /// target's process took the stream but its core refused it (full, shutting down); an
    /// error if the dial fails before any stream opens.
    fn accept_at(
        &mut self,
        from: usize,
        target: Option<Host>,
        port: u16,
    ) -> Result<Option<End>, &'static str> {
        const UNREACHABLE: &str =
            "SOCKS5 error: host unreachable (onion service not found or not running)";
        let now = self.now;
        match target {
            None => Err(UNREACHABLE),
            Some(Host::Registry) => {
                let incarnation = self.registry.incarnation;
                let core = self.registry.core.as_mut().ok_or(UNREACHABLE)?;
                Ok(core.accept_connection(now).ok().map(|conn| End {
                    host: Host::Registry,
                    incarnation,
                    conn,
                }))
            }
            Some(Host::Peer(j)) => {
                if self.partitioned(from, j) {
                    return Err(UNREACHABLE);
                }
                if port != self.config.peer.port {
                    return Err("SOCKS5 error: connection refused (nothing on that port)");
                }
                let host = &mut self.peers[j];
                let core = host.core.as_mut().ok_or(UNREACHABLE)?;
                let incarnation = host.incarnation;
                Ok(core.accept_incoming(now).ok().map(|conn| End {
                    host: Host::Peer(j),
                    incarnation,
                    conn,
                }))
            }
        }
    }

    /// What peer `i`'s core told its user: the workload reacts, the ledger checks.
    fn peer_event(&mut self, i: usize, event: Event) {
        if self.trace.wants_lines() {
            self.trace
                .line(self.now.as_micros(), &format!("peer {i}: {event:?}"));
        }
        match &event {
            Event::KeyChanged {
                nick, presented, ..
            } if Some(*presented) == self.unproven_prober_key() => {
                self.violation(format!(
                    "peer {i} recorded a key conflict for {nick} on a key nobody proved it holds"
                ));
            }
            Event::Registered => {
                self.stats.registrations += 1;
                // While the registry's disk binds the nick to the real peer's key, nobody
                // else may register it.
                if let Some(&j) = self.impostors.get(&i)
                    && self
                        .registry
                        .disk
                        .of_nick(&self.peers[j].identity.nick.canonical())
                        .is_some_and(|b| b.fingerprint == self.peers[j].fingerprint)
                {
                    self.violation(format!(
                        "impostor {i} registered peer {j}'s nick while the registry bound it to peer {j}'s key"
                    ));
                }
                self.peers[i].registered = true;
            }
            Event::RegistryLost { .. } | Event::Unregistered => {
                self.peers[i].registered = false;
            }
            Event::RegistrationFailed(e) if !self.impostors.contains_key(&i) => {
                self.violation(format!("peer {i}'s registration was refused: {e}"));
            }
            Event::Users { users, .. } => {
                let listed = users
                    .iter()
                    .map(|r| (r.nick().clone(), r.onion().hostname()));
                if let Some(what) = crate::ledger::page_is_unique(listed) {
                    self.violation(what);
                }
                for record in users {
                    self.check_record(record.nick(), &record.onion().hostname());
                    if let Some(j) = self.by_nick.get(record.nick()) {
                        self.peers[i].known.insert(*j);
                    }
                }
            }
            Event::Presence(Presence::Joined(record)) => {
                if let Some(j) = self.by_nick.get(record.nick()) {
                    self.peers[i].known.insert(*j);
                }
            }
            Event::Presence(Presence::Resync) => self.stats.presence_resyncs += 1,
            Event::Presence(Presence::Left(nick)) => {
                if let Some(j) = self.by_nick.get(nick) {
                    self.peers[i].known.remove(j);
                }
            }
            Event::ConnectionRequest {
                request,
                nick,
                fingerprint,
                ..
            } => {
                if let Some(&j) = self.by_nick.get(nick) {
                    // A stranger's request under a nick we never talked to is trust on
                    // first use; under a contact's nick with another key, a failure.
                    if *fingerprint != self.peers[j].fingerprint && self.knows(i, j) {
                        self.violation(format!(
                            "peer {i} was asked to chat by {nick} with a key that is not {nick}'s"
                        ));
                    }
                    self.schedule_decision(i, j, *request);
                }
            }
            Event::ChatState {
                nick,
                state: ChatState::Connected,
            } => {
                self.stats.handshakes += 1;
                let got = self.peers[i]
                    .core
                    .as_ref()
                    .and_then(|c| c.chat_fingerprint(nick));
                let truth = self.by_nick.get(nick).map(|j| self.peers[*j].fingerprint);
                if !self.impostors.contains_key(&i) && (got.is_none() || got != truth) {
                    self.violation(format!(
                        "peer {i} got a connected chat with {nick} under a key that is not {nick}'s"
                    ));
                }
                // An impostor must never get a connected chat with someone who knew the real one.
                if let (Some(&j), Some(&other)) = (self.impostors.get(&i), self.by_nick.get(nick))
                    && self.knows(other, j)
                {
                    self.violation(format!(
                        "impostor {i} of peer {j} got a connected chat with {nick}, who knew peer {j}"
                    ));
                }
            }
            Event::ConnectionLost {
                reason: ConnectionLost::Handshake(_),
                ..
            }
            | Event::IncomingRejected { .. } => self.stats.handshakes_rejected += 1,
            Event::ChatClosed { nick, reason } => match reason {
                CloseReason::Denied(_) => self.stats.requests_denied += 1,
                CloseReason::Failed(
                    f @ (ChatFailure::BadRecord { .. } | ChatFailure::Handshake(_)),
                ) => {
                    self.stats.handshakes_rejected += 1;
                    // An impostor's chats are meant to fail.
                    if !self.impostors.contains_key(&i) {
                        self.violation(format!(
                            "peer {i}'s chat with {nick} failed authentication between honest peers: {f}"
                        ));
                    }
                }
                _ => {}
            },

            Event::ShutdownComplete => {
                let host = &mut self.peers[i];
                host.status = Status::Down;
                host.registered = false;
                host.timer = None;
                // Outputs after ShutdownComplete (none are expected) are dropped with it.
                host.core = None;
                if self.config.workload.enabled {
                    let away = self
                        .sampler
                        .between(Duration::from_secs(10), Duration::from_secs(120));
                    self.queue.push(self.now + away, SimEvent::Restart(i));
                }
            }
            _ => {}
        }
        if self.keep_logs {
            self.peers[i].log.push(event);
        }
    }

    /// Peer `i`'s core asked to store `op`: it goes to the disk (surviving crashes), and
    /// the ledger learns what the user will see from it.
    fn store(&mut self, i: usize, op: StoreOp) {
        match &op {
            StoreOp::Queued(m) => {
                if let Some(&j) = self.by_nick.get(&m.to) {
                    self.ledger.sent(i, j, m.id, &m.text);
                }
            }
            StoreOp::Received { from, text, .. } => {
                if let Some(&j) = self.by_nick.get(from) {
                    self.ledger.received(i, j, text);
                }
            }
            StoreOp::Resolved { to, id, outcome } => {
                if let Some(&j) = self.by_nick.get(to) {
                    let delivered = *outcome == Outcome::Delivered;
                    self.ledger.resolved(i, j, *id, delivered);
                }
            }
            StoreOp::Contact(_) | StoreOp::ForgetContact(_) => {}
        }
        self.peers[i].disk.apply(&op);
    }

    /// A record the registry listed must be a real user's nick with that user's address.
    fn check_record(&mut self, nick: &p2pchat_core::nick::Nick, onion: &str) {
        let owner = self.by_onion.get(onion).copied();
        let named = self.by_nick.get(nick).copied();
        if owner.is_none() || owner != named {
            self.violation(format!(
                "the registry listed {nick} at {onion}, which is not {nick}'s address"
            ));
        }
    }
}

/// The simulated wall clock: a fixed date plus virtual time (history timestamps, expiry).
pub(super) fn wall_time(now: p2pchat_core::time::Instant) -> WallTime {
    const START: u64 = 1_790_000_000_000; // 2026-09-21, an arbitrary fixed origin
    WallTime(START + now.as_micros() / 1000)
}
