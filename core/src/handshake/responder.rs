//! The dialed side of the handshake.

use rand_core::CryptoRng;
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroizing;

use super::{
    Established, HandshakeError, INITIATOR_SIGN_CONTEXT, RESPONDER_SIGN_CONTEXT,
    initiator_transcript, random_32, responder_transcript, signed_message, x25519_shared,
};
use crate::channel::{ChannelCipher, Role};
use crate::frame::encode_frame;
use crate::identity::{Identity, RsaPublicKey};
use crate::peer_wire::{Challenge, ChallengeBody, Finish, Hello, PeerFrame};

/// A `Hello` whose certificate verified and which was addressed to us. Nothing proves yet
/// that the initiator holds the RSA key it presents (anyone can copy a certificate), and
/// its key has not been checked against the registry or a pinned contact: the first is
/// [`Responder::on_finish`], the second the peer's decision after it.
#[derive(Debug, Clone)]
pub struct VerifiedHello {
    /// The decoded hello.
    pub hello: Hello,
    body: Vec<u8>,
}

impl VerifiedHello {
    /// Checks a received `Hello` (its raw frame `body` and decoded form) addressed to `identity`.
    pub fn check(identity: &Identity, body: Vec<u8>, hello: Hello) -> Result<Self, HandshakeError> {
        if hello.responder != identity.nick {
            return Err(HandshakeError::Rejected(
                crate::peer_wire::RejectReason::WrongResponder,
            ));
        }
        hello.certificate.verify().map_err(|_| {
            HandshakeError::BadCertificate("the onion key's signature does not verify")
        })?;
        Ok(Self { hello, body })
    }
}

/// A responder waiting for the initiator's `Finish`.
pub struct Responder {
    ephemeral: StaticSecret,
    initiator_key: RsaPublicKey,
    initiator_ephemeral: [u8; 32],
    peer_instance: u64,
    th1: [u8; 32],
}

impl core::fmt::Debug for Responder {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Responder").finish_non_exhaustive()
    }
}

impl Responder {
    /// Answers a verified hello with a `Challenge` for the key it presents, whoever the
    /// initiator claims to be: what the Challenge holds and whether one is sent must not
    /// depend on whether the claimed nick is a contact, a stranger or blocked (a prober
    /// would learn which), so that is decided only once [`Responder::on_finish`] proved
    /// the key. Returns the state and the frame to send.
    pub fn respond(
        rng: &mut impl CryptoRng,
        identity: &Identity,
        hello: &VerifiedHello,
    ) -> Result<(Self, Vec<u8>), HandshakeError> {
        let presented = &hello.hello.certificate.rsa;
        let ephemeral = StaticSecret::from(random_32(rng));
        let body = ChallengeBody {
            nonce: random_32(rng),
            ephemeral: PublicKey::from(&ephemeral).to_bytes(),
            certificate: identity.certificate.clone(),
        };
        let challenge_body = postcard::to_allocvec(&body).map_err(|_| HandshakeError::Crypto)?;
        let th1 = responder_transcript(&hello.body, &challenge_body);
        let signature = identity
            .rsa
            .sign_pss(rng, &signed_message(RESPONDER_SIGN_CONTEXT, &th1))
            .map_err(|_| HandshakeError::Crypto)?;
        let frame = encode_frame(&PeerFrame::Challenge(Challenge { body, signature }))
            .map_err(|_| HandshakeError::Crypto)?;
        Ok((
            Self {
                ephemeral,
                initiator_key: presented.clone(),
                initiator_ephemeral: hello.hello.ephemeral,
                peer_instance: hello.hello.instance,
                th1,
            },
            frame,
        ))
    }

    /// Verifies the initiator's `Finish` — its signature over the transcript proves it
    /// holds the RSA key it presented — and derives the sealed channel.
    pub fn on_finish(
        self,
        rng: &mut impl CryptoRng,
        identity: &Identity,
        finish: &Finish,
    ) -> Result<Established, HandshakeError> {
        let th2 = initiator_transcript(&self.th1, &finish.encrypted_secret);
        if !self.initiator_key.verify_pss(
            &signed_message(INITIATOR_SIGN_CONTEXT, &th2),
            &finish.signature,
        ) {
            return Err(HandshakeError::BadSignature);
        }
        let secret = identity
            .rsa
            .decrypt_oaep(rng, &finish.encrypted_secret)
            .map_err(|_| HandshakeError::BadSecret)?;
        let secret: Zeroizing<[u8; 32]> = Zeroizing::new(
            secret[..]
                .try_into()
                .map_err(|_| HandshakeError::BadSecret)?,
        );
        let dh = Zeroizing::new(x25519_shared(&self.ephemeral, self.initiator_ephemeral)?);
        Ok(Established {
            cipher: ChannelCipher::derive(Role::Responder, &th2, &dh, &secret),
            peer_instance: self.peer_instance,
        })
    }
}
