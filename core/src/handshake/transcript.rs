//! The handshake transcript: what both sides sign and what salts the key derivation.

use sha2::{Digest, Sha256};

/// Domain separation at the start of the transcript hash.
pub const TRANSCRIPT_CONTEXT: &[u8] = b"p2pchat handshake v1\0";
/// Prefix of what the responder signs.
pub const RESPONDER_SIGN_CONTEXT: &[u8] = b"p2pchat handshake responder v1\0";
/// Prefix of what the initiator signs.
pub const INITIATOR_SIGN_CONTEXT: &[u8] = b"p2pchat handshake initiator v1\0";

/// `th1 = SHA-256(context ‖ u32be len ‖ hello_body ‖ u32be len ‖ challenge_body)`.
pub fn responder_transcript(hello_body: &[u8], challenge_body: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(TRANSCRIPT_CONTEXT);
    update_with_len(&mut h, hello_body);
    update_with_len(&mut h, challenge_body);
    h.finalize().into()
}

/// `th2 = SHA-256(th1 ‖ u32be len ‖ encrypted_secret)`.
pub fn initiator_transcript(th1: &[u8; 32], encrypted_secret: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(th1);
    update_with_len(&mut h, encrypted_secret);
    h.finalize().into()
}

/// `context ‖ transcript hash`: the message an RSA-PSS signature covers.
pub fn signed_message(context: &[u8], transcript: &[u8; 32]) -> Vec<u8> {
    let mut m = Vec::with_capacity(context.len() + 32);
    m.extend_from_slice(context);
    m.extend_from_slice(transcript);
    m
}

fn update_with_len(h: &mut Sha256, bytes: &[u8]) {
    // Frame bodies are capped at 64 KiB, so the length always fits.
    h.update((bytes.len() as u32).to_be_bytes());
    h.update(bytes);
}
