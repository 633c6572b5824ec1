//! v3 onion addresses (rend-spec-v3 §6): `base32(pubkey ‖ checksum ‖ version)`.

use core::fmt;
use core::str::FromStr;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha3::{Digest, Sha3_256};

/// The only onion service version we speak.
const VERSION: u8 = 3;
/// Length of the base32 part of a v3 address.
const ENCODED_LEN: usize = 56;

/// Why a string is not a v3 onion address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OnionAddressError {
    /// Not 56 base32 characters (optionally followed by `.onion`).
    #[error("an onion address is 56 characters of a-z and 2-7, optionally followed by .onion")]
    Format,
    /// The version byte is not 3.
    #[error("onion address version {0} is not supported (only v3)")]
    Version(u8),
    /// The checksum does not match: a typo, or not an onion address at all.
    #[error("onion address checksum does not match (check for a typo)")]
    Checksum,
}

/// A v3 onion address, held as the ed25519 public key it encodes.
///
/// Whether those 32 bytes are a valid curve point is checked when a signature is verified
/// with it (see [`crate::identity::KeyBindingCertificate`]).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OnionAddress([u8; 32]);

impl OnionAddress {
    /// The address of an ed25519 public key.
    pub fn from_public_key(key: [u8; 32]) -> Self {
        OnionAddress(key)
    }

    /// The ed25519 public key this address encodes.
    pub fn public_key(&self) -> &[u8; 32] {
        &self.0
    }

    fn checksum(key: &[u8; 32]) -> [u8; 2] {
        let mut h = Sha3_256::new();
        h.update(b".onion checksum");
        h.update(key);
        h.update([VERSION]);
        let digest = h.finalize();
        [digest[0], digest[1]]
    }

    /// The 56 lowercase characters, without `.onion` (Tor's ServiceID).
    pub fn service_id(&self) -> String {
        let mut raw = [0u8; 35];
        raw[..32].copy_from_slice(&self.0);
        raw[32..34].copy_from_slice(&Self::checksum(&self.0));
        raw[34] = VERSION;
        data_encoding::BASE32_NOPAD
            .encode(&raw)
            .to_ascii_lowercase()
    }

    /// The host name to hand to a SOCKS proxy: `<service id>.onion`.
    pub fn hostname(&self) -> String {
        format!("{}.onion", self.service_id())
    }
}

impl FromStr for OnionAddress {
    type Err = OnionAddressError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let id = s.strip_suffix(".onion").unwrap_or(s);
        if id.len() != ENCODED_LEN {
            return Err(OnionAddressError::Format);
        }
        let upper = id.to_ascii_uppercase();
        let raw = data_encoding::BASE32_NOPAD
            .decode(upper.as_bytes())
            .map_err(|_| OnionAddressError::Format)?;
        let raw: [u8; 35] = raw.try_into().map_err(|_| OnionAddressError::Format)?;
        if raw[34] != VERSION {
            return Err(OnionAddressError::Version(raw[34]));
        }
        let mut key = [0u8; 32];
        key.copy_from_slice(&raw[..32]);
        if raw[32..34] != Self::checksum(&key) {
            return Err(OnionAddressError::Checksum);
        }
        Ok(OnionAddress(key))
    }
}

impl fmt::Display for OnionAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.hostname())
    }
}

impl fmt::Debug for OnionAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OnionAddress({})", self.service_id())
    }
}

impl Serialize for OnionAddress {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl<'de> Deserialize<'de> for OnionAddress {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        <[u8; 32]>::deserialize(d).map(OnionAddress)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Real, long-published v3 addresses.
    const REAL: [&str; 3] = [
        "duckduckgogg42xjoc72x3sjasowoarfbgcmvfimaftt6twagswzczad.onion",
        "2gzyxa5ihm7nsggfxnu52rck2vv4rvmdlkiu3zzui5du4xyclen53wid.onion",
        "facebookwkhpilnemxj7asaniu7vnjjbiltxjqhye3mhbshg7kx5tfyd.onion",
    ];

    #[test]
    fn real_addresses_parse_and_print_back_identically() {
        for s in REAL {
            let a: OnionAddress = s.parse().unwrap();
            assert_eq!(a.to_string(), s);
            let bare: OnionAddress = s.trim_end_matches(".onion").parse().unwrap();
            assert_eq!(a, bare);
        }
    }

    #[test]
    fn uppercase_input_is_accepted() {
        let a: OnionAddress = REAL[0]
            .to_ascii_uppercase()
            .replace(".ONION", "")
            .parse()
            .unwrap();
        assert_eq!(a.to_string(), REAL[0]);
    }

    #[test]
    fn a_single_changed_character_breaks_the_checksum() {
        let mut s = REAL[0].to_owned();
        s.replace_range(0..1, "e");
        assert_eq!(s.parse::<OnionAddress>(), Err(OnionAddressError::Checksum));
    }

    #[test]
    fn a_wrong_version_byte_is_reported() {
        let key = *REAL[1].parse::<OnionAddress>().unwrap().public_key();
        let mut raw = [0u8; 35];
        raw[..32].copy_from_slice(&key);
        raw[32..34].copy_from_slice(&OnionAddress::checksum(&key));
        raw[34] = 2;
        let s = data_encoding::BASE32_NOPAD
            .encode(&raw)
            .to_ascii_lowercase();
        assert_eq!(
            s.parse::<OnionAddress>(),
            Err(OnionAddressError::Version(2))
        );
    }

    #[test]
    fn wrong_lengths_and_alphabets_are_format_errors() {
        for s in [
            "",
            "abc.onion",
            &"a".repeat(55),
            &"1".repeat(56),
            &"a".repeat(57),
        ] {
            assert_eq!(
                s.parse::<OnionAddress>(),
                Err(OnionAddressError::Format),
                "{s}"
            );
        }
        // A v2 address (16 characters) is not accepted.
        assert_eq!(
            "expyuzz4wqqyqhjn.onion".parse::<OnionAddress>(),
            Err(OnionAddressError::Format)
        );
    }

    proptest::proptest! {
        #[test]
        fn any_string_parses_or_errors_without_panic(s in ".{0,80}") {
            let _ = s.parse::<OnionAddress>();
        }

        #[test]
        fn every_key_round_trips_through_text(key in proptest::array::uniform32(0u8..)) {
            let a = OnionAddress::from_public_key(key);
            proptest::prop_assert_eq!(a.to_string().parse::<OnionAddress>(), Ok(a));
        }
    }
}
