//! Nicknames: the names users pick and the registry keeps unique.

use core::fmt;
use serde::{Deserialize, Deserializer, Serialize};

/// Longest nickname, in bytes (all nickname characters are ASCII).
pub const MAX_NICK_LEN: usize = 32;

/// Why a string is not a nickname.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NickError {
    /// Empty, or longer than [`MAX_NICK_LEN`].
    #[error("a nickname must be 1 to {MAX_NICK_LEN} characters long")]
    Length,
    /// A character outside `A-Z a-z 0-9 _ -`.
    #[error("a nickname may only contain letters A-Z, digits, '_' and '-'")]
    Charset,
}

/// A validated nickname: 1 to 32 characters from `A-Z a-z 0-9 _ -`.
///
/// Equality and ordering ignore case, so `Alice` and `alice` are the same user and cannot
/// both be registered. Display shows the canonical lower case: two users' nicks then never
/// look alike (`alIce` *is* `alice`), whatever case their owners typed. The wire carries
/// the nick as written ([`Nick::as_str`]).
#[derive(Clone, Serialize)]
#[serde(transparent)]
pub struct Nick(String);

impl Nick {
    /// Validates `s` as a nickname.
    pub fn new(s: &str) -> Result<Self, NickError> {
        if s.is_empty() || s.len() > MAX_NICK_LEN {
            return Err(NickError::Length);
        }
        if !s
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(NickError::Charset);
        }
        Ok(Nick(s.to_owned()))
    }

    /// The nickname as the user wrote it.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The case-folded form used for uniqueness and lookups.
    pub fn canonical(&self) -> String {
        self.0.to_ascii_lowercase()
    }
}

impl PartialEq for Nick {
    fn eq(&self, other: &Self) -> bool {
        self.0.eq_ignore_ascii_case(&other.0)
    }
}
impl Eq for Nick {}

impl PartialOrd for Nick {
    fn partial_cmp(&self, other: &Self) -> Option<core::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Nick {
    fn cmp(&self, other: &Self) -> core::cmp::Ordering {
        self.0
            .bytes()
            .map(|b| b.to_ascii_lowercase())
            .cmp(other.0.bytes().map(|b| b.to_ascii_lowercase()))
    }
}

impl fmt::Display for Nick {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in self.0.chars() {
            fmt::Write::write_char(f, c.to_ascii_lowercase())?;
        }
        Ok(())
    }
}

impl fmt::Debug for Nick {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Nick({})", self.0)
    }
}

impl<'de> Deserialize<'de> for Nick {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Owned, so formats that unescape strings (JSON, TOML) work as well as postcard.
        let s = String::deserialize(d)?;
        Nick::new(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_nicks_are_accepted() {
        for s in ["a", "Alice", "bob_2", "x-y", &"z".repeat(MAX_NICK_LEN)] {
            assert!(Nick::new(s).is_ok(), "{s}");
        }
    }

    #[test]
    fn invalid_nicks_are_rejected_with_the_reason() {
        assert_eq!(Nick::new(""), Err(NickError::Length));
        assert_eq!(
            Nick::new(&"z".repeat(MAX_NICK_LEN + 1)),
            Err(NickError::Length)
        );
        for s in ["a b", "é", "a\n", "a.b", "<script>"] {
            assert_eq!(Nick::new(s), Err(NickError::Charset), "{s}");
        }
    }

    #[test]
    fn nicks_differing_only_in_case_are_the_same_user() {
        let a = Nick::new("Alice").unwrap();
        let b = Nick::new("aLICE").unwrap();
        assert_eq!(a, b);
        assert_eq!(a.canonical(), b.canonical());
        assert_eq!(a.as_str(), "Alice");
        assert_eq!(a.to_string(), "alice", "shown in the canonical lower case");
    }
}
