//! Properties the fuzzers rely on. Every message type survives `decode(encode(x)) = x`
//! through the frame layer, and the fuzz harnesses (run here with the real crypto)
//! never panic nor exceed their caps on arbitrary input.

use proptest::collection::vec;
use proptest::prelude::*;

use crate::frame::{FrameDecoder, decode_body, encode_frame};
use crate::identity::{Ed25519Signature, KeyBindingCertificate};
use crate::nick::Nick;
use crate::peer_wire::{
    Challenge, ChallengeBody, ChannelMessage, Finish, Hello, PeerFrame, RejectReason, Sealed,
};
use crate::registry::{
    ClientMessage, Presence, RegisterError, Registration, ServerError, ServerMessage, UserRecord,
};
use crate::test_keys;

fn nick() -> impl Strategy<Value = Nick> {
    "[A-Za-z0-9_-]{1,32}".prop_filter_map("valid nick", |s| Nick::new(&s).ok())
}

fn certificate() -> impl Strategy<Value = KeyBindingCertificate> {
    (0..test_keys::RSA_2048_COUNT, nick(), any::<u64>()).prop_map(|(i, nick, serial)| {
        KeyBindingCertificate::issue(
            &test_keys::onion(i),
            nick,
            test_keys::rsa(i).public().clone(),
            serial,
        )
    })
}

fn record() -> impl Strategy<Value = UserRecord> {
    (certificate(), any::<u16>()).prop_map(|(certificate, port)| UserRecord { certificate, port })
}

fn text() -> impl Strategy<Value = String> {
    ".{0,40}"
}

fn channel_message() -> impl Strategy<Value = ChannelMessage> {
    prop_oneof![
        any::<u64>().prop_map(|instance| ChannelMessage::Accept { instance }),
        text().prop_map(|reason| ChannelMessage::Deny { reason }),
        (any::<u64>(), any::<u64>(), text())
            .prop_map(|(id, nonce, text)| ChannelMessage::Message { id, nonce, text }),
        any::<u64>().prop_map(|id| ChannelMessage::Ack { id }),
        text().prop_map(|reason| ChannelMessage::Close { reason }),
        Just(ChannelMessage::CloseAck),
        Just(ChannelMessage::Ping),
        Just(ChannelMessage::Pong),
        (any::<u64>(), any::<u64>())
            .prop_map(|(stored_upto, nonce)| ChannelMessage::Resume { stored_upto, nonce }),
    ]
}

fn peer_frame() -> impl Strategy<Value = PeerFrame> {
    let reject = prop_oneof![
        Just(RejectReason::WrongResponder),
        Just(RejectReason::UnknownInitiator),
        Just(RejectReason::KeyMismatch),
        Just(RejectReason::BadProof),
        Just(RejectReason::Busy),
        Just(RejectReason::Simultaneous),
        Just(RejectReason::ShuttingDown),
        Just(RejectReason::ProtocolViolation),
        Just(RejectReason::RegistryUnavailable),
    ];
    prop_oneof![
        (
            any::<[u8; 32]>(),
            any::<[u8; 32]>(),
            certificate(),
            any::<u16>(),
            nick(),
            any::<u64>()
        )
            .prop_map(
                |(nonce, ephemeral, certificate, port, responder, instance)| {
                    PeerFrame::Hello(Hello {
                        nonce,
                        ephemeral,
                        certificate,
                        port,
                        responder,
                        instance,
                    })
                }
            ),
        (
            any::<[u8; 32]>(),
            any::<[u8; 32]>(),
            certificate(),
            vec(any::<u8>(), 0..300)
        )
            .prop_map(|(nonce, ephemeral, certificate, signature)| {
                PeerFrame::Challenge(Challenge {
                    body: ChallengeBody {
                        nonce,
                        ephemeral,
                        certificate,
                    },
                    signature,
                })
            }),
        (vec(any::<u8>(), 0..300), vec(any::<u8>(), 0..300)).prop_map(
            |(encrypted_secret, signature)| PeerFrame::Finish(Finish {
                encrypted_secret,
                signature
            })
        ),
        reject.prop_map(PeerFrame::Reject),
        (any::<u64>(), vec(any::<u8>(), 0..300)).prop_map(|(counter, ciphertext)| {
            PeerFrame::Sealed(Sealed {
                counter,
                ciphertext,
            })
        }),
    ]
}

fn client_message() -> impl Strategy<Value = ClientMessage> {
    prop_oneof![
        (
            text(),
            any::<[u8; 32]>(),
            any::<u16>(),
            vec(any::<u8>(), 0..300),
            any::<u64>(),
            any::<[u8; 64]>(),
            vec(any::<u8>(), 0..300),
            any::<[u8; 64]>(),
        )
            .prop_map(
                |(nick, onion, port, rsa_public_key, serial, sig, challenge_signature, proof)| {
                    ClientMessage::Register(Registration {
                        nick,
                        onion,
                        port,
                        rsa_public_key,
                        certificate_serial: serial,
                        certificate_signature: Ed25519Signature(sig),
                        challenge_signature,
                        onion_signature: Ed25519Signature(proof),
                    })
                }
            ),
        (any::<u32>(), text()).prop_map(|(request, nick)| ClientMessage::Lookup { request, nick }),
        (
            any::<u32>(),
            text(),
            proptest::option::of(text()),
            any::<u16>()
        )
            .prop_map(|(request, prefix, after, limit)| ClientMessage::List {
                request,
                prefix,
                after,
                limit
            }),
        Just(ClientMessage::Subscribe),
        Just(ClientMessage::Unregister),
        Just(ClientMessage::Ping),
    ]
}

fn server_message() -> impl Strategy<Value = ServerMessage> {
    let register_error = prop_oneof![
        Just(RegisterError::NickTaken),
        Just(RegisterError::AddressTaken),
        Just(RegisterError::InvalidNick),
        Just(RegisterError::InvalidOnion),
        Just(RegisterError::InvalidKey),
        Just(RegisterError::InvalidPort),
        Just(RegisterError::BadCertificate),
        Just(RegisterError::BadSignature),
        Just(RegisterError::RegistryFull),
        Just(RegisterError::AlreadyRegistered),
        Just(RegisterError::NickReserved),
        Just(RegisterError::AddressReserved),
        Just(RegisterError::Busy),
    ];
    let server_error = prop_oneof![
        Just(ServerError::Malformed),
        Just(ServerError::RateLimited),
        Just(ServerError::TooManyAttempts),
        Just(ServerError::NotRegistered),
        Just(ServerError::Timeout),
        Just(ServerError::Replaced),
    ];
    prop_oneof![
        any::<[u8; 32]>().prop_map(|nonce| ServerMessage::Challenge { nonce }),
        Just(ServerMessage::Registered),
        register_error.prop_map(ServerMessage::RegisterRejected),
        (any::<u32>(), proptest::option::of(record()))
            .prop_map(|(request, record)| ServerMessage::LookupResult { request, record }),
        (any::<u32>(), vec(record(), 0..4), any::<bool>()).prop_map(|(request, users, more)| {
            ServerMessage::Page {
                request,
                users,
                more,
            }
        }),
        vec(
            prop_oneof![
                record().prop_map(Presence::Joined),
                nick().prop_map(Presence::Left),
                Just(Presence::Resync),
            ],
            0..4
        )
        .prop_map(ServerMessage::Presence),
        Just(ServerMessage::Unregistered),
        Just(ServerMessage::Pong),
        server_error.prop_map(ServerMessage::Error),
        Just(ServerMessage::ShuttingDown),
        any::<u32>().prop_map(|request| ServerMessage::Busy { request }),
    ]
}

/// Encodes, decodes through a decoder fed in two pieces, and compares.
fn round_trips<T>(message: &T, split: usize) -> Result<(), TestCaseError>
where
    T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + core::fmt::Debug,
{
    let wire = encode_frame(message).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let split = split % (wire.len() + 1);
    let mut decoder = FrameDecoder::new();
    let mut first = &wire[..split];
    let body = match decoder.decode(&mut first) {
        // Only the whole frame completes it.
        Ok(Some(body)) if split == wire.len() => Ok(Some(body)),
        Ok(None) => decoder.decode(&mut &wire[split..]),
        other => other,
    };
    let Ok(Some(body)) = body else {
        return Err(TestCaseError::fail(format!("no frame: {body:?}")));
    };
    let decoded = decode_body::<T>(&body).ok();
    prop_assert_eq!(decoded.as_ref(), Some(message));
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn every_peer_frame_round_trips(m in peer_frame(), split in any::<usize>()) {
        round_trips(&m, split)?;
    }

    #[test]
    fn every_channel_message_round_trips(m in channel_message(), split in any::<usize>()) {
        round_trips(&m, split)?;
    }

    #[test]
    fn every_client_message_round_trips(m in client_message(), split in any::<usize>()) {
        round_trips(&m, split)?;
    }

    #[test]
    fn every_server_message_round_trips(m in server_message(), split in any::<usize>()) {
        round_trips(&m, split)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn the_fuzz_harnesses_hold_on_arbitrary_input(data in vec(any::<u8>(), 0..600)) {
        crate::fuzzing::frame_decoder(&data);
        crate::fuzzing::onion_address(&data);
        crate::fuzzing::key_binding_certificate(&data);
        crate::fuzzing::handshake_initiator(&data);
        crate::fuzzing::handshake_responder(&data);
        crate::fuzzing::registry_client(&data);
        crate::fuzzing::registry_server(&data);
    }

    #[test]
    fn an_established_channel_holds_on_arbitrary_input(data in vec(any::<u8>(), 0..300)) {
        crate::fuzzing::channel(&data);
    }
}
