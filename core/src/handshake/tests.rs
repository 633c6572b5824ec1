use super::*;
use crate::channel::ChannelCipher;
use crate::frame::{FrameDecoder, decode_body};
use crate::identity::Identity;
use crate::peer_wire::{ChallengeBody, ChannelMessage, PeerFrame, RejectReason};
use crate::test_keys;

fn parse(frame: &[u8]) -> (Vec<u8>, PeerFrame) {
    let mut d = FrameDecoder::new();
    let body = d.decode(&mut &frame[..]).unwrap().unwrap();
    let msg = decode_body(&body).unwrap();
    (body, msg)
}

fn expected(id: &Identity) -> ExpectedPeer {
    ExpectedPeer {
        nick: id.nick.clone(),
        onion: id.address(),
        rsa: id.rsa.public().clone(),
    }
}

fn hello_of(frame: &[u8]) -> (Vec<u8>, crate::peer_wire::Hello) {
    match parse(frame) {
        (body, PeerFrame::Hello(h)) => (body, h),
        other => panic!("{other:?}"),
    }
}

fn challenge_of(frame: &[u8]) -> crate::peer_wire::Challenge {
    match parse(frame).1 {
        PeerFrame::Challenge(c) => c,
        other => panic!("{other:?}"),
    }
}

fn finish_of(frame: &[u8]) -> crate::peer_wire::Finish {
    match parse(frame).1 {
        PeerFrame::Finish(f) => f,
        other => panic!("{other:?}"),
    }
}

struct Run {
    init: ChannelCipher,
    resp: Established,
}

fn full_handshake(alice: &Identity, bob: &Identity, seed: u64) -> Run {
    let mut rng = test_keys::rng(seed);
    let (i, hello) = Initiator::start(&mut rng, alice, 9000, 11, expected(bob)).unwrap();
    let (body, h) = hello_of(&hello);
    let vh = VerifiedHello::check(bob, body, h).unwrap();
    let (r, challenge) = Responder::respond(&mut rng, bob, &vh).unwrap();
    let (finish, init) = i
        .on_challenge(&mut rng, alice, &challenge_of(&challenge))
        .unwrap();
    let resp = r.on_finish(&mut rng, bob, &finish_of(&finish)).unwrap();
    Run { init, resp }
}

#[test]
fn a_complete_handshake_gives_both_sides_matching_keys() {
    let alice = test_keys::identity(0, "alice");
    let bob = test_keys::identity(1, "bob");
    let mut run = full_handshake(&alice, &bob, 1);
    assert_eq!(run.resp.peer_instance, 11);
    let frame = run
        .resp
        .cipher
        .seal(&ChannelMessage::Accept { instance: 22 })
        .unwrap();
    let PeerFrame::Sealed(s) = parse(&frame).1 else {
        panic!()
    };
    assert_eq!(
        run.init.open(&s).unwrap(),
        ChannelMessage::Accept { instance: 22 }
    );
}

#[test]
fn initiator_detects_a_responder_with_the_wrong_rsa_key() {
    let alice = test_keys::identity(0, "alice");
    let bob = test_keys::identity(1, "bob");
    let mut rng = test_keys::rng(2);
    let mut exp = expected(&bob);
    exp.rsa = test_keys::rsa(5).public().clone();
    let (i, hello) = Initiator::start(&mut rng, &alice, 9000, 1, exp).unwrap();
    let (body, h) = hello_of(&hello);
    let vh = VerifiedHello::check(&bob, body, h).unwrap();
    let (_, challenge) = Responder::respond(&mut rng, &bob, &vh).unwrap();
    let err = i
        .on_challenge(&mut rng, &alice, &challenge_of(&challenge))
        .unwrap_err();
    assert!(matches!(err, HandshakeError::Impersonation { .. }), "{err}");
    assert!(err.to_string().starts_with("possible impersonation"));
}

#[test]
fn an_initiator_with_a_copied_certificate_is_answered_but_cannot_finish() {
    let alice = test_keys::identity(0, "alice");
    let bob = test_keys::identity(1, "bob");
    // Mallory presents alice's certificate (public: anyone can copy it) but holds
    // another RSA key. Her Hello is answered like any other; her Finish cannot prove
    // the key, so nothing she presented is ever compared with a pin.
    let mut mallory = Identity::new(alice.nick.clone(), test_keys::rsa(8), test_keys::onion(0));
    mallory.certificate = alice.certificate.clone();
    let mut rng = test_keys::rng(3);
    let (i, hello) = Initiator::start(&mut rng, &mallory, 9000, 1, expected(&bob)).unwrap();
    let (body, h) = hello_of(&hello);
    let vh = VerifiedHello::check(&bob, body, h).unwrap();
    let (r, challenge) = Responder::respond(&mut rng, &bob, &vh).unwrap();
    let (finish, _) = i
        .on_challenge(&mut rng, &mallory, &challenge_of(&challenge))
        .unwrap();
    assert_eq!(
        r.on_finish(&mut rng, &bob, &finish_of(&finish))
            .unwrap_err(),
        HandshakeError::BadSignature
    );
}

#[test]
fn a_challenge_reveals_nothing_of_the_responders_state() {
    // Two Hellos claiming the same nick get Challenges that differ only in fresh values:
    // no instance, nothing stable a prober could compare.
    let alice = test_keys::identity(0, "alice");
    let bob = test_keys::identity(1, "bob");
    let mut rng = test_keys::rng(5);
    let bodies: Vec<_> = (0..2)
        .map(|_| {
            let (_, hello) = Initiator::start(&mut rng, &alice, 9000, 1, expected(&bob)).unwrap();
            let (body, h) = hello_of(&hello);
            let vh = VerifiedHello::check(&bob, body, h).unwrap();
            let (_, challenge) = Responder::respond(&mut rng, &bob, &vh).unwrap();
            challenge_of(&challenge).body
        })
        .collect();
    // Every field, by name: a field added to the Challenge must be looked at here.
    let [
        ChallengeBody {
            nonce: n0,
            ephemeral: e0,
            certificate: c0,
        },
        ChallengeBody {
            nonce: n1,
            ephemeral: e1,
            certificate: c1,
        },
    ] = &bodies[..]
    else {
        panic!("two challenges");
    };
    assert_eq!(c0, c1);
    assert_ne!(n0, n1);
    assert_ne!(e0, e1);
}

#[test]
fn a_hello_for_another_nick_is_refused() {
    let alice = test_keys::identity(0, "alice");
    let bob = test_keys::identity(1, "bob");
    let carol = test_keys::identity(2, "carol");
    let mut rng = test_keys::rng(4);
    let (_, hello) = Initiator::start(&mut rng, &alice, 9000, 1, expected(&bob)).unwrap();
    let (body, h) = hello_of(&hello);
    assert_eq!(
        VerifiedHello::check(&carol, body, h).unwrap_err(),
        HandshakeError::Rejected(RejectReason::WrongResponder)
    );
}

#[test]
fn a_certificate_claiming_someone_elses_onion_is_refused() {
    let alice = test_keys::identity(0, "alice");
    let bob = test_keys::identity(1, "bob");
    let mut rng = test_keys::rng(5);
    let (_, hello) = Initiator::start(&mut rng, &alice, 9000, 1, expected(&bob)).unwrap();
    let (body, mut h) = hello_of(&hello);
    h.certificate.onion = test_keys::onion(9).address();
    assert!(matches!(
        VerifiedHello::check(&bob, body, h),
        Err(HandshakeError::BadCertificate(_))
    ));
}

#[test]
fn a_recorded_initiator_handshake_replayed_later_fails() {
    let alice = test_keys::identity(0, "alice");
    let bob = test_keys::identity(1, "bob");
    let mut rng = test_keys::rng(6);
    // Record a genuine run.
    let (i, hello) = Initiator::start(&mut rng, &alice, 9000, 1, expected(&bob)).unwrap();
    let (body, h) = hello_of(&hello);
    let vh = VerifiedHello::check(&bob, body.clone(), h.clone()).unwrap();
    let (_, challenge) = Responder::respond(&mut rng, &bob, &vh).unwrap();
    let (finish, _) = i
        .on_challenge(&mut rng, &alice, &challenge_of(&challenge))
        .unwrap();
    // Replay Hello and Finish to a fresh responder: its new nonce breaks the signature.
    let vh = VerifiedHello::check(&bob, body, h).unwrap();
    let (r, _) = Responder::respond(&mut rng, &bob, &vh).unwrap();
    assert_eq!(
        r.on_finish(&mut rng, &bob, &finish_of(&finish))
            .unwrap_err(),
        HandshakeError::BadSignature
    );
}

#[test]
fn a_recorded_challenge_replayed_to_a_new_initiator_fails() {
    let alice = test_keys::identity(0, "alice");
    let bob = test_keys::identity(1, "bob");
    let mut rng = test_keys::rng(7);
    let (_, hello) = Initiator::start(&mut rng, &alice, 9000, 1, expected(&bob)).unwrap();
    let (body, h) = hello_of(&hello);
    let vh = VerifiedHello::check(&bob, body, h).unwrap();
    let (_, challenge) = Responder::respond(&mut rng, &bob, &vh).unwrap();
    let (i2, _) = Initiator::start(&mut rng, &alice, 9000, 1, expected(&bob)).unwrap();
    assert_eq!(
        i2.on_challenge(&mut rng, &alice, &challenge_of(&challenge))
            .unwrap_err(),
        HandshakeError::BadSignature
    );
}

#[test]
fn works_with_a_3072_bit_responder_key() {
    let alice = test_keys::identity(0, "alice");
    let bob = Identity::new(
        crate::nick::Nick::new("bob").unwrap(),
        test_keys::rsa_3072(),
        test_keys::onion(1),
    );
    let run = full_handshake(&alice, &bob, 8);
    assert_eq!(run.resp.peer_instance, 11);
}
