//! Virtual Tor streams: reliable, ordered byte streams between two hosts, with latency,
//! random chunking, graceful close and resets. Like str0m's netem, this is a small
//! sans-IO component: it decides when each piece arrives; the world schedules it.

use std::collections::{BTreeMap, VecDeque};

use p2pchat_core::conn::ConnId;
use p2pchat_core::time::Instant;

/// A host in the world.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Host {
    /// The registry.
    Registry,
    /// Peer number `n`.
    Peer(usize),
}

/// One end of a stream: a connection of one incarnation of a host. A restarted host is a
/// new incarnation, so stale deliveries to its old connection ids go nowhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct End {
    pub(crate) host: Host,
    pub(crate) incarnation: u32,
    pub(crate) conn: ConnId,
}

/// What travels on one direction of a stream.
#[derive(Debug)]
pub(crate) enum Segment {
    Bytes(Vec<u8>),
    /// The other side closed (or the stream was reset): the end sees `Closed`.
    Fin,
}

#[derive(Debug)]
struct Stream {
    ends: [End; 2],
    /// Segments on their way to `ends[side]`, with arrival times (non-decreasing).
    inflight: [VecDeque<(Instant, Segment)>; 2],
    /// Whether `ends[side]` is finished: closed by its owner or told `Closed`.
    done: [bool; 2],
}

/// Where a segment must be delivered: stream and side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Arrival {
    pub(crate) stream: u64,
    pub(crate) side: usize,
}

/// All open streams.
#[derive(Default)]
pub(crate) struct Network {
    streams: BTreeMap<u64, Stream>,
    by_end: BTreeMap<End, (u64, usize)>,
    next_stream: u64,
}

impl Network {
    /// Opens a stream between `a` and `b`.
    pub(crate) fn open(&mut self, a: End, b: End) -> u64 {
        let id = self.next_stream;
        self.next_stream += 1;
        self.streams.insert(
            id,
            Stream {
                ends: [a, b],
                inflight: [VecDeque::new(), VecDeque::new()],
                done: [false, false],
            },
        );
        self.by_end.insert(a, (id, 0));
        self.by_end.insert(b, (id, 1));
        id
    }

    /// Number of open streams.
    pub(crate) fn len(&self) -> usize {
        self.streams.len()
    }

    /// Queues `pieces` (with their arrival delays after `now`) from `from` to the other
    /// end. Arrival times never go backwards on one direction: a stream is ordered.
    /// Returns the arrivals to schedule, or nothing if `from` has no open stream.
    pub(crate) fn send(
        &mut self,
        from: End,
        now: Instant,
        pieces: Vec<(core::time::Duration, Vec<u8>)>,
    ) -> Vec<(Instant, Arrival)> {
        let Some(&(id, side)) = self.by_end.get(&from) else {
            return Vec::new();
        };
        let to = 1 - side;
        let Some(stream) = self.streams.get_mut(&id) else {
            return Vec::new();
        };
        if stream.done[to] {
            return Vec::new();
        }
        let mut out = Vec::with_capacity(pieces.len());
        for (delay, bytes) in pieces {
            let last = stream.inflight[to].back().map(|(t, _)| *t);
            let at = last.map_or(now + delay, |l| l.max(now + delay));
            stream.inflight[to].push_back((at, Segment::Bytes(bytes)));
            out.push((
                at,
                Arrival {
                    stream: id,
                    side: to,
                },
            ));
        }
        out
    }

    /// `from`'s owner closed it: the other end gets `Closed` after what is in flight.
    pub(crate) fn close(
        &mut self,
        from: End,
        now: Instant,
        delay: core::time::Duration,
    ) -> Option<(Instant, Arrival)> {
        let (id, side) = self.by_end.remove(&from)?;
        let to = 1 - side;
        let stream = self.streams.get_mut(&id)?;
        stream.done[side] = true;
        stream.inflight[side].clear();
        if stream.done[to] {
            self.remove(id);
            return None;
        }
        let last = stream.inflight[to].back().map(|(t, _)| *t);
        let at = last.map_or(now + delay, |l| l.max(now + delay));
        stream.inflight[to].push_back((at, Segment::Fin));
        Some((
            at,
            Arrival {
                stream: id,
                side: to,
            },
        ))
    }

    /// Resets stream `id` mid-message: each direction delivers at most a prefix of the
    /// piece in flight (`cut` picks its length), then `Closed`. Returns the arrivals.
    pub(crate) fn reset(
        &mut self,
        id: u64,
        now: Instant,
        delay: core::time::Duration,
        mut cut: impl FnMut(usize) -> usize,
    ) -> Vec<(Instant, Arrival)> {
        let Some(stream) = self.streams.get_mut(&id) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for side in 0..2 {
            if stream.done[side] {
                continue;
            }
            let queue = &mut stream.inflight[side];
            let partial = match queue.pop_front() {
                Some((at, Segment::Bytes(mut b))) => {
                    b.truncate(cut(b.len()));
                    (!b.is_empty()).then_some((at, b))
                }
                _ => None,
            };
            queue.clear();
            let mut fin_at = now + delay;
            if let Some((at, b)) = partial {
                queue.push_back((at, Segment::Bytes(b)));
                out.push((at, Arrival { stream: id, side }));
                fin_at = fin_at.max(at);
            }
            queue.push_back((fin_at, Segment::Fin));
            out.push((fin_at, Arrival { stream: id, side }));
        }
        out
    }

    /// Takes the next segment due by `now` for an arrival: the end it is for and what it
    /// is. `None` if the stream or that end is gone (closed, reset, or its host restarted),
    /// or if a reset replaced the segment this arrival was scheduled for.
    pub(crate) fn arrive(&mut self, arrival: Arrival, now: Instant) -> Option<(End, Segment)> {
        let stream = self.streams.get_mut(&arrival.stream)?;
        if stream.done[arrival.side] {
            return None;
        }
        let queue = &mut stream.inflight[arrival.side];
        if queue.front().is_none_or(|(at, _)| *at > now) {
            return None;
        }
        let (_, segment) = queue.pop_front()?;
        let end = stream.ends[arrival.side];
        if matches!(segment, Segment::Fin) {
            stream.done[arrival.side] = true;
            self.by_end.remove(&end);
            if stream.done[1 - arrival.side] {
                self.remove(arrival.stream);
            }
        }
        Some((end, segment))
    }

    /// Every open stream with an end at `host` (any incarnation).
    pub(crate) fn streams_of(&self, host: Host) -> Vec<End> {
        self.by_end
            .keys()
            .filter(|e| e.host == host)
            .copied()
            .collect()
    }

    /// The registry's ends of peer `peer`'s registry connections.
    pub(crate) fn registry_ends_of(&self, peer: usize) -> Vec<End> {
        self.streams
            .values()
            .filter_map(|s| match (s.ends[0].host, s.ends[1].host) {
                (Host::Peer(p), Host::Registry) if p == peer => Some(s.ends[1]),
                (Host::Registry, Host::Peer(p)) if p == peer => Some(s.ends[0]),
                _ => None,
            })
            .collect()
    }

    /// Ids of streams whose two ends satisfy `cross` (for partitions), in order.
    pub(crate) fn streams_between(&self, mut cross: impl FnMut(Host, Host) -> bool) -> Vec<u64> {
        self.streams
            .iter()
            .filter(|(_, s)| cross(s.ends[0].host, s.ends[1].host))
            .map(|(id, _)| *id)
            .collect()
    }

    /// The id of the `n`-th open stream (for random resets).
    pub(crate) fn nth_stream(&self, n: usize) -> Option<u64> {
        self.streams.keys().nth(n).copied()
    }

    fn remove(&mut self, id: u64) {
        if let Some(s) = self.streams.remove(&id) {
            for end in s.ends {
                if self.by_end.get(&end).is_some_and(|(i, _)| *i == id) {
                    self.by_end.remove(&end);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::time::Duration;

    fn end(host: Host, conn: u64) -> End {
        End {
            host,
            incarnation: 0,
            conn: ConnId(conn),
        }
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_later_piece_never_overtakes_an_earlier_one() {
        let mut net = Network::default();
        let (a, b) = (end(Host::Peer(0), 0), end(Host::Peer(1), 0));
        net.open(a, b);
        let t0 = Instant::ZERO;
        let first = net.send(a, t0, vec![(ms(500), b"slow".to_vec())]);
        let second = net.send(a, t0, vec![(ms(10), b"fast".to_vec())]);
        assert!(second[0].0 >= first[0].0);
        let (to, seg) = net.arrive(first[0].1, first[0].0).unwrap();
        assert_eq!(to, b);
        assert!(matches!(seg, Segment::Bytes(x) if x == b"slow"));
    }

    #[test]
    fn close_delivers_data_in_flight_before_closed() {
        let mut net = Network::default();
        let (a, b) = (end(Host::Peer(0), 0), end(Host::Peer(1), 0));
        net.open(a, b);
        let sent = net.send(a, Instant::ZERO, vec![(ms(100), b"x".to_vec())]);
        let (fin_at, fin) = net.close(a, Instant::ZERO, ms(1)).unwrap();
        assert!(fin_at >= sent[0].0);
        assert!(matches!(
            net.arrive(sent[0].1, fin_at),
            Some((_, Segment::Bytes(_)))
        ));
        assert!(matches!(net.arrive(fin, fin_at), Some((e, Segment::Fin)) if e == b));
        assert_eq!(net.len(), 0);
    }

    #[test]
    fn a_reset_delivers_a_prefix_then_closed_to_both_sides() {
        let mut net = Network::default();
        let (a, b) = (end(Host::Peer(0), 0), end(Host::Peer(1), 0));
        let id = net.open(a, b);
        net.send(a, Instant::ZERO, vec![(ms(100), vec![1, 2, 3, 4])]);
        let arrivals = net.reset(id, Instant::ZERO, ms(50), |len| len / 2);
        let got: Vec<_> = arrivals
            .into_iter()
            .filter_map(|(at, a)| net.arrive(a, at))
            .map(|(e, s)| (e, matches!(s, Segment::Fin)))
            .collect();
        assert!(got.contains(&(b, false)));
        assert!(got.contains(&(b, true)));
        assert!(got.contains(&(a, true)));
        assert_eq!(net.len(), 0);
    }
}
