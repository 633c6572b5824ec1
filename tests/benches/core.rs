//! The cost of a chat in the core: complete handshakes (both sides), the full sealed-channel path
//! of a message (frame, seal, decode, open, and the acknowledgement back), the original
//! scheme (each message RSA-OAEP-SHA256 under the peer's key) on the same messages, and
//! the RSA primitives (to compare with `openssl speed`). Numbers: docs/BENCHMARKS.md.
//!
//!     cargo bench -p p2pchat-tests --bench core

#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic here is how a bench reports failure

use divan::Bencher;
use divan::counter::ItemsCount;
use p2pchat_core::channel::ChannelCipher;
use p2pchat_core::frame::{FrameDecoder, decode_body};
use p2pchat_core::handshake::{ExpectedPeer, Initiator, Responder, VerifiedHello};
use p2pchat_core::identity::{Identity, RsaIdentity};
use p2pchat_core::nick::Nick;
use p2pchat_core::peer_wire::{ChannelMessage, PeerFrame};
use p2pchat_core::test_keys;

fn main() {
    divan::main();
}

fn identities(bits: usize) -> (Identity, Identity) {
    let (a, b) = match bits {
        3072 => (test_keys::rsa_3072(), test_keys::rsa_3072()),
        _ => (test_keys::rsa(0), test_keys::rsa(1)),
    };
    (
        Identity::new(Nick::new("alice").unwrap(), a, test_keys::onion(0)),
        Identity::new(Nick::new("bob").unwrap(), b, test_keys::onion(1)),
    )
}

fn body(frame: &[u8]) -> PeerFrame {
    decode_body(&frame[4..]).unwrap()
}

/// One complete handshake, both sides: Hello, Challenge, Finish, both sealed channels.
fn handshake(
    alice: &Identity,
    bob: &Identity,
    rng: &mut rand_chacha::ChaCha20Rng,
) -> (ChannelCipher, ChannelCipher) {
    let expected = ExpectedPeer {
        nick: bob.nick.clone(),
        onion: bob.address(),
        rsa: bob.rsa.public().clone(),
    };
    let (initiator, hello) = Initiator::start(rng, alice, 5051, 1, expected).unwrap();
    let PeerFrame::Hello(h) = body(&hello) else {
        panic!()
    };
    let verified = VerifiedHello::check(bob, hello[4..].to_vec(), h).unwrap();
    let (responder, challenge) = Responder::respond(rng, bob, &verified).unwrap();
    let PeerFrame::Challenge(c) = body(&challenge) else {
        panic!()
    };
    let (finish, a) = initiator.on_challenge(rng, alice, &c).unwrap();
    let PeerFrame::Finish(f) = body(&finish) else {
        panic!()
    };
    let b = responder.on_finish(rng, bob, &f).unwrap();
    (a, b.cipher)
}

#[divan::bench(args = [2048, 3072], sample_count = 20, sample_size = 5)]
fn complete_handshake(bencher: Bencher, bits: usize) {
    let (alice, bob) = identities(bits);
    let mut rng = test_keys::rng(1);
    bencher
        .counter(ItemsCount::new(1usize))
        .bench_local(|| handshake(&alice, &bob, &mut rng));
}

/// A message of `len` bytes through the full path: alice seals it into a frame, bob
/// decodes and opens it, seals the acknowledgement, alice decodes and opens that.
#[divan::bench(args = [100, 4096])]
fn channel_message_with_ack(bencher: Bencher, len: usize) {
    let (alice, bob) = identities(2048);
    let (mut a, mut b) = handshake(&alice, &bob, &mut test_keys::rng(2));
    let text = "x".repeat(len);
    let (mut a_in, mut b_in) = (FrameDecoder::new(), FrameDecoder::new());
    let mut id = 0u64;
    bencher.counter(ItemsCount::new(1usize)).bench_local(|| {
        id += 1;
        let frame = a
            .seal(&ChannelMessage::Message {
                id,
                nonce: id,
                text: text.clone(),
            })
            .unwrap();
        let body = b_in.decode(&mut &frame[..]).unwrap().unwrap();
        let PeerFrame::Sealed(sealed) = decode_body(&body).unwrap() else {
            panic!()
        };
        let ChannelMessage::Message { id: got, .. } = b.open(&sealed).unwrap() else {
            panic!()
        };
        let ack = b.seal(&ChannelMessage::Ack { id: got }).unwrap();
        let body = a_in.decode(&mut &ack[..]).unwrap().unwrap();
        let PeerFrame::Sealed(sealed) = decode_body(&body).unwrap() else {
            panic!()
        };
        a.open(&sealed).unwrap()
    });
}

/// As the runtime does under load: 100 messages arrive together and are acknowledged by
/// one cumulative `Ack` (one per read). Counted per message.
#[divan::bench(args = [100, 4096])]
fn channel_messages_batch_of_100_one_ack(bencher: Bencher, len: usize) {
    let (alice, bob) = identities(2048);
    let (mut a, mut b) = handshake(&alice, &bob, &mut test_keys::rng(2));
    let text = "x".repeat(len);
    let (mut a_in, mut b_in) = (FrameDecoder::new(), FrameDecoder::new());
    let mut id = 0u64;
    let mut wire = Vec::new();
    bencher.counter(ItemsCount::new(100usize)).bench_local(|| {
        wire.clear();
        for _ in 0..100 {
            id += 1;
            let frame = a
                .seal(&ChannelMessage::Message {
                    id,
                    nonce: id,
                    text: text.clone(),
                })
                .unwrap();
            wire.extend_from_slice(&frame);
        }
        let mut input = &wire[..];
        let mut upto = 0;
        while let Some(body) = b_in.decode(&mut input).unwrap() {
            let PeerFrame::Sealed(sealed) = decode_body(&body).unwrap() else {
                panic!()
            };
            let ChannelMessage::Message { id: got, .. } = b.open(&sealed).unwrap() else {
                panic!()
            };
            upto = got;
        }
        let ack = b.seal(&ChannelMessage::Ack { id: upto }).unwrap();
        let body = a_in.decode(&mut &ack[..]).unwrap().unwrap();
        let PeerFrame::Sealed(sealed) = decode_body(&body).unwrap() else {
            panic!()
        };
        a.open(&sealed).unwrap()
    });
}

/// The original scheme on the same message: RSA-OAEP-SHA256 to the peer's 2048-bit key,
/// decrypted by the peer (longer messages in 190-byte blocks, the most OAEP-SHA256 takes).
#[divan::bench(args = [100, 4096], sample_count = 20, sample_size = 5)]
fn original_scheme_message(bencher: Bencher, len: usize) {
    let bob = test_keys::rsa(1);
    let text = vec![b'x'; len];
    let mut rng = test_keys::rng(3);
    bencher.counter(ItemsCount::new(1usize)).bench_local(|| {
        for block in text.chunks(190) {
            let c = bob.public().encrypt_oaep(&mut rng, block).unwrap();
            bob.decrypt_oaep(&mut rng, &c).unwrap();
        }
    });
}

mod rsa_2048 {
    use super::*;

    #[divan::bench(sample_count = 20, sample_size = 10)]
    fn pss_sign(bencher: Bencher) {
        let key = test_keys::rsa(0);
        let mut rng = test_keys::rng(4);
        bencher.bench_local(|| key.sign_pss(&mut rng, b"message").unwrap());
    }

    #[divan::bench]
    fn pss_verify(bencher: Bencher) {
        let key = test_keys::rsa(0);
        let sig = key.sign_pss(&mut test_keys::rng(5), b"message").unwrap();
        bencher.bench_local(|| assert!(key.public().verify_pss(b"message", &sig)));
    }

    #[divan::bench]
    fn oaep_encrypt(bencher: Bencher) {
        let key = test_keys::rsa(0);
        let mut rng = test_keys::rng(6);
        bencher.bench_local(|| key.public().encrypt_oaep(&mut rng, &[7u8; 32]).unwrap());
    }

    #[divan::bench(sample_count = 20, sample_size = 10)]
    fn oaep_decrypt(bencher: Bencher) {
        let key = test_keys::rsa(0);
        let mut rng = test_keys::rng(7);
        let c = key.public().encrypt_oaep(&mut rng, &[7u8; 32]).unwrap();
        bencher.bench_local(|| key.decrypt_oaep(&mut rng, &c).unwrap());
    }

    #[divan::bench(sample_count = 10, sample_size = 2)]
    fn key_generation(bencher: Bencher) {
        let mut rng = test_keys::rng(8);
        bencher.bench_local(|| RsaIdentity::generate(&mut rng, 2048).unwrap());
    }
}
