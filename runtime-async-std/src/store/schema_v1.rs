//! Records as schema 1 of both stores wrote them, before certificates carried serials, so
//! that a schema 1 store is migrated instead of refused. Each converts to the next schema's
//! record with serial 0: the form a certificate had before serials (its signature still verifies).

use p2pchat_core::identity::{
    Ed25519Signature, Fingerprint, KeyBindingCertificate, OnionAddress, RsaPublicKey,
};
use p2pchat_core::nick::Nick;
use p2pchat_core::peer::{ContactKey, WallTime};
use p2pchat_core::registry::{Binding, RegistryTime};
use serde::Deserialize;

use super::schema_v2::ContactRecordV2;

/// A registry binding.
#[derive(Deserialize)]
pub(super) struct BindingV1 {
    nick: Nick,
    onion: OnionAddress,
    fingerprint: Fingerprint,
    last_seen: WallTime,
}

impl From<BindingV1> for Binding {
    fn from(b: BindingV1) -> Self {
        Self {
            nick: b.nick,
            onion: b.onion,
            fingerprint: b.fingerprint,
            // Wall-clock times become the registry's clock as they are (schema 4).
            last_seen: RegistryTime(b.last_seen.0),
            serial: 0,
        }
    }
}

/// A key-binding certificate.
#[derive(Deserialize)]
struct CertificateV1 {
    onion: OnionAddress,
    nick: Nick,
    rsa: RsaPublicKey,
    signature: Ed25519Signature,
}

impl From<CertificateV1> for KeyBindingCertificate {
    fn from(c: CertificateV1) -> Self {
        Self {
            onion: c.onion,
            nick: c.nick,
            rsa: c.rsa,
            serial: 0,
            signature: c.signature,
        }
    }
}

/// What a peer knew of a contact's key.
#[derive(Deserialize)]
enum ContactKeyV1 {
    Unknown,
    Fingerprint(Fingerprint),
    Pinned {
        certificate: CertificateV1,
        port: u16,
    },
}

/// A peer's contact.
#[derive(Deserialize)]
pub(super) struct ContactRecordV1 {
    nick: Nick,
    key: ContactKeyV1,
    verified: bool,
    blocked: bool,
    our_instance: u64,
    next_id: u64,
    peer_instance: Option<u64>,
    received_upto: u64,
}

/// Schema 1 → 2: only the certificate changed (serial 0); schema 2 → today's record
/// is `schema_v2`'s.
impl From<ContactRecordV1> for ContactRecordV2 {
    fn from(c: ContactRecordV1) -> Self {
        Self {
            nick: c.nick,
            key: match c.key {
                ContactKeyV1::Unknown => ContactKey::Unknown,
                ContactKeyV1::Fingerprint(f) => ContactKey::Fingerprint(f),
                ContactKeyV1::Pinned { certificate, port } => ContactKey::Pinned {
                    certificate: certificate.into(),
                    port,
                },
            },
            verified: c.verified,
            blocked: c.blocked,
            our_instance: c.our_instance,
            next_id: c.next_id,
            peer_instance: c.peer_instance,
            received_upto: c.received_upto,
        }
    }
}
