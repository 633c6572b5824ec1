//! Entry points of the fuzz targets (`fuzz/fuzz_targets/`), compiled only with
//! `--cfg fuzzing`. Each turns fuzz bytes into inputs and time steps for one parser or
//! state machine, drains a bounded number of outputs, and asserts what must hold. Under
//! `cfg(fuzzing)` the RSA and Ed25519 operations are fakes (see `identity`): any
//! signature verifies and RSA-OAEP is a length byte and the plaintext, so fuzz input
//! reaches the code behind the checks. ChaCha20-Poly1305 stays real: the harnesses seal
//! what they want a peer to receive.

use core::time::Duration;
use std::collections::BTreeMap;

use crate::conn::ConnId;
use crate::frame::{FrameDecoder, MAX_FRAME_BODY, decode_body};
use crate::handshake::{ExpectedPeer, Initiator};
use crate::harness::{Delivery, Host, World};
use crate::identity::{KeyBindingCertificate, OnionAddress, RsaPublicKey};
use crate::nick::Nick;
use crate::peer::{AcceptPolicy, Input, Output, Peer, PeerConfig, Target};
use crate::peer_wire::{ChannelMessage, PeerFrame};
use crate::registry::{ClientMessage, RegistryConfig, ServerMessage};
use crate::test_keys;
use crate::time::Instant;

/// Most outputs one step may produce before it counts as unbounded (a bug).
const MAX_OUTPUTS_PER_STEP: usize = 100_000;

/// Fuzz bytes as a stream of small decisions.
struct Bytes<'a>(&'a [u8]);

impl<'a> Bytes<'a> {
    fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }

    /// A chunk: a length byte, then up to that many bytes.
    fn chunk(&mut self) -> Option<&'a [u8]> {
        let n = usize::from(self.byte()?);
        let n = n.min(self.0.len());
        let (chunk, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(chunk)
    }

    /// A longer chunk: two length bytes.
    fn long_chunk(&mut self) -> Option<&'a [u8]> {
        let n = usize::from(u16::from_le_bytes([self.byte()?, self.byte()?]));
        let n = n.min(self.0.len());
        let (chunk, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(chunk)
    }
}

/// Arbitrary bytes, split into arbitrary chunks, through the frame decoder and every
/// message decoder: nothing panics and no body exceeds the cap.
pub fn frame_decoder(data: &[u8]) {
    let Some((&split, rest)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(split).max(1);
    let mut decoder = FrameDecoder::new();
    for mut piece in rest.chunks(chunk) {
        loop {
            match decoder.decode(&mut piece) {
                Ok(Some(body)) => {
                    assert!(body.len() <= MAX_FRAME_BODY);
                    let _ = decode_body::<PeerFrame>(&body);
                    let _ = decode_body::<ClientMessage>(&body);
                    let _ = decode_body::<ServerMessage>(&body);
                }
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
}

/// A string as an onion address: parses or errors; what parses prints back to itself.
pub fn onion_address(data: &[u8]) {
    let Ok(text) = core::str::from_utf8(data) else {
        return;
    };
    if let Ok(address) = text.parse::<OnionAddress>() {
        assert_eq!(address.hostname().parse::<OnionAddress>(), Ok(address));
        assert_eq!(
            OnionAddress::from_public_key(*address.public_key()),
            address
        );
    }
}

/// Bytes as an RSA key (SPKI DER) and as a key-binding certificate.
pub fn key_binding_certificate(data: &[u8]) {
    if let Ok(key) = RsaPublicKey::from_der(data) {
        assert_eq!(RsaPublicKey::from_der(key.der()).ok(), Some(key));
    }
    if let Ok(certificate) = postcard::from_bytes::<KeyBindingCertificate>(data) {
        let _ = certificate.verify();
        let bytes = postcard::to_allocvec(&certificate).unwrap_or_default();
        assert_eq!(
            postcard::from_bytes::<KeyBindingCertificate>(&bytes).ok(),
            Some(certificate)
        );
    }
}

/// An initiator that dialed bob, fed arbitrary frames as bob's answers.
pub fn handshake_initiator(data: &[u8]) {
    let mut rng = test_keys::rng(1);
    let alice = test_keys::identity(0, "alice");
    let bob = test_keys::identity(1, "bob");
    let expected = ExpectedPeer {
        nick: bob.nick.clone(),
        onion: bob.address(),
        rsa: bob.rsa.public().clone(),
    };
    let Ok((initiator, _hello)) = Initiator::start(&mut rng, &alice, 5051, 7, expected) else {
        return;
    };
    let mut initiator = Some(initiator);
    let mut channel = None;
    let mut decoder = FrameDecoder::new();
    let mut input = Bytes(data);
    while let Some(mut chunk) = input.chunk() {
        while let Ok(Some(body)) = decoder.decode(&mut chunk) {
            let Ok(frame) = decode_body::<PeerFrame>(&body) else {
                return;
            };
            match (frame, initiator.take(), channel.as_mut()) {
                (PeerFrame::Challenge(challenge), Some(init), None) => {
                    match init.on_challenge(&mut rng, &alice, &challenge) {
                        Ok((_finish, cipher)) => channel = Some(cipher),
                        Err(_) => return,
                    }
                }
                (PeerFrame::Sealed(sealed), None, Some(cipher)) => {
                    if cipher.open(&sealed).is_err() {
                        return;
                    }
                }
                _ => return,
            }
        }
    }
}

/// Runs a peer's outputs to exhaustion (bounded); returns the transmits per connection.
fn drain_peer(peer: &mut Peer) -> Vec<(ConnId, Vec<u8>)> {
    let mut out = Vec::new();
    for _ in 0..MAX_OUTPUTS_PER_STEP {
        match peer.poll_output() {
            Some(Output::Transmit { conn, bytes }) => out.push((conn, bytes)),
            Some(_) => {}
            None => return out,
        }
    }
    panic!("a peer produced more than {MAX_OUTPUTS_PER_STEP} outputs in one step");
}

/// A peer accepting an inbound connection, fed arbitrary bytes and time steps (the
/// responder side of the handshake, then the sealed channel and user decisions).
pub fn handshake_responder(data: &[u8]) {
    let config = PeerConfig {
        accept_policy: AcceptPolicy::Ask,
        ..PeerConfig::default()
    };
    let alice = test_keys::identity(0, "alice");
    let mut now = Instant::ZERO;
    let mut peer = Peer::new(
        config,
        test_keys::identity(1, "bob"),
        &mut test_keys::rng(2),
        now,
    );
    if let Ok(nick) = Nick::new("alice") {
        peer.import_verified(now, &nick, alice.rsa.public().fingerprint());
    }
    let Ok(conn) = peer.accept_incoming(now) else {
        return;
    };
    let mut input = Bytes(data);
    while let Some(op) = input.byte() {
        match op % 4 {
            0 | 1 => {
                let Some(bytes) = input.long_chunk() else {
                    return;
                };
                peer.handle_input(now, Input::Received { conn, bytes });
            }
            2 => {
                now = now + Duration::from_millis(u64::from(input.byte().unwrap_or(0)) * 997);
                peer.handle_timeout(now);
            }
            _ => {
                let request = u64::from(input.byte().unwrap_or(0) % 4);
                if input.byte().unwrap_or(0) % 2 == 0 {
                    let _ = peer.accept(now, request);
                } else {
                    let _ = peer.deny(now, request, "no");
                }
            }
        }
        drain_peer(&mut peer);
    }
}

/// A peer's registry connection, fed arbitrary bytes (a hostile registry) and time steps.
pub fn registry_client(data: &[u8]) {
    let mut now = Instant::ZERO;
    let mut peer = Peer::new(
        PeerConfig::default(),
        test_keys::identity(0, "alice"),
        &mut test_keys::rng(3),
        now,
    );
    peer.register(now);
    let mut conn = None;
    let mut input = Bytes(data);
    loop {
        for _ in 0..MAX_OUTPUTS_PER_STEP {
            match peer.poll_output() {
                Some(Output::Connect {
                    conn: c,
                    target: Target::Registry,
                }) => {
                    conn = Some(c);
                    peer.handle_input(now, Input::Connected { conn: c });
                }
                Some(_) => {}
                None => break,
            }
        }
        let Some(op) = input.byte() else { return };
        match (op % 5, conn) {
            (0..=2, Some(c)) => {
                let Some(bytes) = input.long_chunk() else {
                    return;
                };
                peer.handle_input(now, Input::Received { conn: c, bytes });
            }
            (3, _) => {
                now = now + Duration::from_secs(u64::from(input.byte().unwrap_or(0)));
                peer.handle_timeout(now);
            }
            (_, Some(c)) => {
                let prefix = input
                    .chunk()
                    .map(String::from_utf8_lossy)
                    .unwrap_or_default();
                peer.refresh_users(now, &prefix, None);
                if op % 2 == 0 {
                    peer.handle_input(now, Input::Closed { conn: c });
                    conn = None;
                }
            }
            (_, None) => {
                now = now + Duration::from_secs(61);
                peer.handle_timeout(now);
            }
        }
    }
}

/// The registry server fed arbitrary client bytes on several connections, valid
/// registrations (signatures are faked), closes and time steps. Its caps must hold.
pub fn registry_server(data: &[u8]) {
    let config = RegistryConfig {
        max_users: 4,
        max_connections: 6,
        ..RegistryConfig::default()
    };
    let (max_users, max_connections) = (config.max_users, config.max_connections);
    let mut world = World::registry_only(config);
    let mut conns: Vec<ConnId> = Vec::new();
    let mut challenges: BTreeMap<ConnId, [u8; 32]> = BTreeMap::new();
    let mut input = Bytes(data);
    while let Some(op) = input.byte() {
        let pick = |b: Option<u8>, conns: &[ConnId]| {
            (!conns.is_empty()).then(|| conns[usize::from(b.unwrap_or(0)) % conns.len()])
        };
        match op % 6 {
            0 => conns.extend(world.open_client()),
            1 | 2 => {
                let target = pick(input.byte(), &conns);
                let Some(bytes) = input.long_chunk() else {
                    return;
                };
                if let Some(c) = target {
                    world.client_bytes(c, bytes);
                }
            }
            3 => {
                let target = pick(input.byte(), &conns);
                let who = usize::from(input.byte().unwrap_or(0) % 6);
                let port = u16::from(input.byte().unwrap_or(1));
                if let Some(c) = target {
                    let id = test_keys::identity(who, ["a", "b", "c", "a", "d", "e"][who]);
                    let nonce = challenges.get(&c).copied().unwrap_or([0; 32]);
                    let registration = world.registration(&id, &nonce, port);
                    world.client_send(c, &ClientMessage::Register(registration));
                }
            }
            4 => {
                if let Some(c) = pick(input.byte(), &conns) {
                    world.close_client(c);
                    conns.retain(|x| *x != c);
                }
            }
            _ => world.advance(Duration::from_secs(u64::from(input.byte().unwrap_or(0)))),
        }
        for &c in &conns {
            for message in world.client_inbox(c) {
                if let ServerMessage::Challenge { nonce } = message {
                    challenges.insert(c, nonce);
                }
            }
        }
        conns.retain(|c| !world.registry_closed.contains(c));
        assert!(world.registry.user_count() <= max_users);
        assert!(world.registry.connection_count() <= max_connections);
    }
}

/// An established chat between two peers, fed arbitrary channel messages (sealed
/// properly, so they reach the message logic), raw bytes, commands and time steps.
pub fn channel(data: &[u8]) {
    let config = PeerConfig {
        accept_policy: AcceptPolicy::AcceptAll,
        ..PeerConfig::default()
    };
    let mut world = World::new(&["alice", "bob"], config);
    world.register_all();
    let (alice, bob) = (world.nick(0), world.nick(1));
    if world.peers[0].connect(world.now, &bob).is_err() {
        return;
    }
    world.run();
    let mut input = Bytes(data);
    while let Some(op) = input.byte() {
        match op % 7 {
            0 => {
                let text = input
                    .chunk()
                    .map(String::from_utf8_lossy)
                    .unwrap_or_default();
                let _ = world.peers[0].send(world.now, &bob, &text);
            }
            1 => {
                let text = input
                    .chunk()
                    .map(String::from_utf8_lossy)
                    .unwrap_or_default();
                let _ = world.peers[1].send(world.now, &alice, &text);
            }
            2 | 3 => {
                let Some(bytes) = input.long_chunk() else {
                    return;
                };
                if let Ok(message) = postcard::from_bytes::<ChannelMessage>(bytes) {
                    world.peers[1].fuzz_seal(&alice, &message);
                }
            }
            4 => {
                let Some(bytes) = input.long_chunk() else {
                    return;
                };
                if let Some(conn) = world.conn_between(0, 1) {
                    world.deliver((Host::Peer(0), conn), Delivery::Bytes(bytes.to_vec()));
                }
            }
            5 => world.advance(Duration::from_secs(u64::from(input.byte().unwrap_or(0)))),
            _ => {
                let _ = match input.byte().unwrap_or(0) % 4 {
                    0 => world.peers[0].close_chat(world.now, &bob, "bye"),
                    1 => world.peers[1].connect(world.now, &alice),
                    2 => world.peers[0].retry_now(world.now, &bob),
                    _ => {
                        world.peers[1].shutdown(world.now);
                        Ok(())
                    }
                };
            }
        }
        world.run();
    }
}
