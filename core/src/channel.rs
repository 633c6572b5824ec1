//! The sealed channel after a handshake: ChaCha20-Poly1305 with per-direction counters.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use hkdf::Hkdf;
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::frame::{FrameError, decode_body, encode_frame};
use crate::peer_wire::{ChannelMessage, PeerFrame, Sealed};

/// HKDF info for the initiator → responder key.
pub const INFO_INITIATOR_TO_RESPONDER: &[u8] = b"p2pchat v1 initiator->responder";
/// HKDF info for the responder → initiator key.
pub const INFO_RESPONDER_TO_INITIATOR: &[u8] = b"p2pchat v1 responder->initiator";
/// Associated data prefix of every sealed frame (followed by the counter, u64 big-endian).
pub const SEALED_AAD_CONTEXT: &[u8] = b"p2pchat sealed v1\0";

/// Why a sealed frame was refused. Each of these ends the connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChannelError {
    /// A frame with a counter already used: a replay.
    #[error("a replayed message was received (counter {got}, expected {expected})")]
    Replayed {
        /// The counter in the frame.
        got: u64,
        /// The counter expected next.
        expected: u64,
    },
    /// A frame with a counter from the future: something was dropped or reordered.
    #[error("messages arrived out of order or were dropped (counter {got}, expected {expected})")]
    Reordered {
        /// The counter in the frame.
        got: u64,
        /// The counter expected next.
        expected: u64,
    },
    /// The authentication tag did not verify: the frame was modified in transit.
    #[error("a message failed authentication (tampered or corrupted)")]
    Tampered,
    /// Decrypted, but not a valid channel message.
    #[error("the peer sent a malformed message")]
    Malformed,
    /// This direction has used every counter value.
    #[error("sealed channel counter exhausted; reconnect")]
    Exhausted,
}

/// Which side of the handshake we were.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// We dialed.
    Initiator,
    /// We were dialed.
    Responder,
}

/// Keys and counters of one established connection.
pub struct ChannelCipher {
    send: ChaCha20Poly1305,
    recv: ChaCha20Poly1305,
    send_counter: u64,
    recv_counter: u64,
}

impl core::fmt::Debug for ChannelCipher {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ChannelCipher")
            .field("send_counter", &self.send_counter)
            .field("recv_counter", &self.recv_counter)
            .finish_non_exhaustive()
    }
}

impl ChannelCipher {
    /// Derives both directions' keys: HKDF-SHA256 with `salt = transcript`, `ikm = dh ‖ secret`.
    pub fn derive(role: Role, transcript: &[u8; 32], dh: &[u8; 32], secret: &[u8; 32]) -> Self {
        let mut ikm = Zeroizing::new([0u8; 64]);
        ikm[..32].copy_from_slice(dh);
        ikm[32..].copy_from_slice(secret);
        let hk = Hkdf::<Sha256>::new(Some(transcript), &ikm[..]);
        let mut i2r = Zeroizing::new([0u8; 32]);
        let mut r2i = Zeroizing::new([0u8; 32]);
        // 32 bytes is far below HKDF-SHA256's 8160-byte output limit, so expand cannot fail.
        let _ = hk.expand(INFO_INITIATOR_TO_RESPONDER, &mut i2r[..]);
        let _ = hk.expand(INFO_RESPONDER_TO_INITIATOR, &mut r2i[..]);
        let (send, recv) = match role {
            Role::Initiator => (i2r, r2i),
            Role::Responder => (r2i, i2r),
        };
        Self {
            send: ChaCha20Poly1305::new(&Key::from(*send)),
            recv: ChaCha20Poly1305::new(&Key::from(*recv)),
            send_counter: 0,
            recv_counter: 0,
        }
    }

    fn nonce(counter: u64) -> Nonce {
        let mut n = [0u8; 12];
        n[4..].copy_from_slice(&counter.to_be_bytes());
        Nonce::from(n)
    }

    fn aad(counter: u64) -> [u8; SEALED_AAD_CONTEXT.len() + 8] {
        let mut aad = [0u8; SEALED_AAD_CONTEXT.len() + 8];
        aad[..SEALED_AAD_CONTEXT.len()].copy_from_slice(SEALED_AAD_CONTEXT);
        aad[SEALED_AAD_CONTEXT.len()..].copy_from_slice(&counter.to_be_bytes());
        aad
    }

    /// Seals `message` into a complete wire frame.
    pub fn seal(&mut self, message: &ChannelMessage) -> Result<Vec<u8>, ChannelError> {
        let counter = self.send_counter;
        if counter == u64::MAX {
            return Err(ChannelError::Exhausted);
        }
        let plaintext =
            Zeroizing::new(postcard::to_allocvec(message).map_err(|_| ChannelError::Malformed)?);
        let aad = Self::aad(counter);
        let ciphertext = self
            .send
            .encrypt(
                &Self::nonce(counter),
                Payload {
                    msg: &plaintext,
                    aad: &aad,
                },
            )
            .map_err(|_| ChannelError::Malformed)?;
        self.send_counter += 1;
        encode_frame(&PeerFrame::Sealed(Sealed {
            counter,
            ciphertext,
        }))
        .map_err(|_: FrameError| ChannelError::Malformed)
    }

    /// Opens a sealed frame, enforcing the exact next counter.
    pub fn open(&mut self, sealed: &Sealed) -> Result<ChannelMessage, ChannelError> {
        let expected = self.recv_counter;
        if sealed.counter < expected {
            return Err(ChannelError::Replayed {
                got: sealed.counter,
                expected,
            });
        }
        if sealed.counter > expected {
            return Err(ChannelError::Reordered {
                got: sealed.counter,
                expected,
            });
        }
        if expected == u64::MAX {
            return Err(ChannelError::Exhausted);
        }
        let aad = Self::aad(expected);
        let plaintext = Zeroizing::new(
            self.recv
                .decrypt(
                    &Self::nonce(expected),
                    Payload {
                        msg: &sealed.ciphertext,
                        aad: &aad,
                    },
                )
                .map_err(|_| ChannelError::Tampered)?,
        );
        self.recv_counter += 1;
        // Sealed messages carry no version byte of their own: the frame's covers them.
        let mut body = Vec::with_capacity(plaintext.len() + 1);
        body.push(crate::frame::WIRE_VERSION);
        body.extend_from_slice(&plaintext);
        decode_body(&body).map_err(|_| ChannelError::Malformed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{FrameDecoder, LENGTH_PREFIX};

    fn pair() -> (ChannelCipher, ChannelCipher) {
        let t = [1u8; 32];
        let dh = [2u8; 32];
        let s = [3u8; 32];
        (
            ChannelCipher::derive(Role::Initiator, &t, &dh, &s),
            ChannelCipher::derive(Role::Responder, &t, &dh, &s),
        )
    }

    fn unwrap_sealed(frame: &[u8]) -> Sealed {
        let mut d = FrameDecoder::new();
        let body = d.decode(&mut &frame[..]).unwrap().unwrap();
        match decode_body::<PeerFrame>(&body).unwrap() {
            PeerFrame::Sealed(s) => s,
            other => panic!("not sealed: {other:?}"),
        }
    }

    #[test]
    fn sealed_messages_open_in_order_both_ways() {
        let (mut i, mut r) = pair();
        for n in 0..3 {
            let m = ChannelMessage::Message {
                id: n,
                nonce: n + 1,
                text: format!("hi {n}"),
            };
            let f = unwrap_sealed(&i.seal(&m).unwrap());
            assert_eq!(r.open(&f).unwrap(), m);
            let f = unwrap_sealed(&r.seal(&ChannelMessage::Ack { id: n }).unwrap());
            assert_eq!(i.open(&f).unwrap(), ChannelMessage::Ack { id: n });
        }
    }

    #[test]
    fn replay_reorder_and_tamper_are_told_apart() {
        let (mut i, mut r) = pair();
        let f0 = unwrap_sealed(&i.seal(&ChannelMessage::Ping).unwrap());
        let f1 = unwrap_sealed(&i.seal(&ChannelMessage::Pong).unwrap());
        assert!(matches!(
            r.open(&f1),
            Err(ChannelError::Reordered {
                got: 1,
                expected: 0
            })
        ));
        r.open(&f0).unwrap();
        assert!(matches!(
            r.open(&f0),
            Err(ChannelError::Replayed {
                got: 0,
                expected: 1
            })
        ));
        let mut bad = f1.clone();
        bad.ciphertext[0] ^= 1;
        assert_eq!(r.open(&bad), Err(ChannelError::Tampered));
        let mut truncated = f1.clone();
        truncated.ciphertext.pop();
        assert_eq!(r.open(&truncated), Err(ChannelError::Tampered));
    }

    #[test]
    fn a_frame_sealed_for_one_direction_does_not_open_in_the_other() {
        let (mut i, _r) = pair();
        let (mut i2, _) = pair();
        let f = unwrap_sealed(&i.seal(&ChannelMessage::Ping).unwrap());
        assert_eq!(i2.open(&f), Err(ChannelError::Tampered));
    }

    #[test]
    fn sealed_frames_hide_the_text() {
        let (mut i, _) = pair();
        let frame = i
            .seal(&ChannelMessage::Message {
                id: 1,
                nonce: 7,
                text: "attack at dawn".into(),
            })
            .unwrap();
        let hay = &frame[LENGTH_PREFIX..];
        assert!(!hay.windows(6).any(|w| w == b"attack"));
    }
}
