//! The dialing side of the handshake.

use rand_core::CryptoRng;
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroizing;

use super::{
    HandshakeError, INITIATOR_SIGN_CONTEXT, RESPONDER_SIGN_CONTEXT, initiator_transcript,
    random_32, responder_transcript, signed_message, x25519_shared,
};
use crate::channel::{ChannelCipher, Role};
use crate::frame::{FrameError, encode_frame};
use crate::identity::{Identity, OnionAddress, RsaPublicKey};
use crate::nick::Nick;
use crate::peer_wire::{Challenge, Finish, Hello, PeerFrame};

/// Who the initiator expects to reach: from the registry record or a pinned contact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpectedPeer {
    /// The nick dialed.
    pub nick: Nick,
    /// The onion address dialed.
    pub onion: OnionAddress,
    /// The RSA key that nick must present.
    pub rsa: RsaPublicKey,
}

/// An initiator waiting for the responder's [`Challenge`].
pub struct Initiator {
    expected: ExpectedPeer,
    ephemeral: StaticSecret,
    hello_body: Vec<u8>,
}

impl core::fmt::Debug for Initiator {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Initiator")
            .field("expected", &self.expected)
            .finish_non_exhaustive()
    }
}

impl Initiator {
    /// Starts a handshake; returns the state and the `Hello` frame to send.
    pub fn start(
        rng: &mut impl CryptoRng,
        identity: &Identity,
        port: u16,
        instance: u64,
        expected: ExpectedPeer,
    ) -> Result<(Self, Vec<u8>), FrameError> {
        let ephemeral = StaticSecret::from(random_32(rng));
        let hello = Hello {
            nonce: random_32(rng),
            ephemeral: PublicKey::from(&ephemeral).to_bytes(),
            certificate: identity.certificate.clone(),
            port,
            responder: expected.nick.clone(),
            instance,
        };
        let frame = encode_frame(&PeerFrame::Hello(hello))?;
        let hello_body = frame[crate::frame::LENGTH_PREFIX..].to_vec();
        Ok((
            Self {
                expected,
                ephemeral,
                hello_body,
            },
            frame,
        ))
    }

    /// Who this handshake expects.
    pub fn expected(&self) -> &ExpectedPeer {
        &self.expected
    }

    /// Checks the responder's challenge; on success returns the `Finish` frame and the
    /// sealed channel. The responder's instance arrives later, in its sealed `Accept`.
    pub fn on_challenge(
        self,
        rng: &mut impl CryptoRng,
        identity: &Identity,
        challenge: &Challenge,
    ) -> Result<(Vec<u8>, ChannelCipher), HandshakeError> {
        let cert = &challenge.body.certificate;
        if cert.onion != self.expected.onion {
            return Err(HandshakeError::BadCertificate(
                "it names another onion address",
            ));
        }
        if cert.nick != self.expected.nick {
            return Err(HandshakeError::BadCertificate("it names another nick"));
        }
        cert.verify().map_err(|_| {
            HandshakeError::BadCertificate("the onion key's signature does not verify")
        })?;
        // The signature first: a key conflict is recorded only for a responder that
        // proved it holds the key it presents.
        let challenge_body =
            postcard::to_allocvec(&challenge.body).map_err(|_| HandshakeError::Unexpected)?;
        let th1 = responder_transcript(&self.hello_body, &challenge_body);
        if !cert.rsa.verify_pss(
            &signed_message(RESPONDER_SIGN_CONTEXT, &th1),
            &challenge.signature,
        ) {
            return Err(HandshakeError::BadSignature);
        }
        if cert.rsa != self.expected.rsa {
            return Err(HandshakeError::Impersonation {
                nick: self.expected.nick.clone(),
                expected: self.expected.rsa.fingerprint(),
                presented: cert.rsa.fingerprint(),
            });
        }
        let dh = Zeroizing::new(x25519_shared(&self.ephemeral, challenge.body.ephemeral)?);

        let secret = Zeroizing::new(random_32(rng));
        let encrypted_secret = cert
            .rsa
            .encrypt_oaep(rng, &secret[..])
            .map_err(|_| HandshakeError::Crypto)?;
        let th2 = initiator_transcript(&th1, &encrypted_secret);
        let signature = identity
            .rsa
            .sign_pss(rng, &signed_message(INITIATOR_SIGN_CONTEXT, &th2))
            .map_err(|_| HandshakeError::Crypto)?;
        let frame = encode_frame(&PeerFrame::Finish(Finish {
            encrypted_secret,
            signature,
        }))
        .map_err(|_| HandshakeError::Crypto)?;
        let cipher = ChannelCipher::derive(Role::Initiator, &th2, &dh, &secret);
        Ok((frame, cipher))
    }
}
