//! What the registry remembers of users who are not online: which onion address and key
//! each nick belongs to, for a while after its owner was last seen. While a binding lasts,
//! only the same key can register that nick or that onion address, so a nick does not pass
//! to whoever registers it next when its owner goes offline. The owner moves to a new RSA
//! key with a certificate of a higher serial from the same onion key; an older certificate
//! is refused. Bindings leave the core as
//! ordered [`BindingOp`]s, like a peer's `StoreOp`s, and come back through
//! [`super::Registry::restore`].

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::identity::{Fingerprint, OnionAddress};
use crate::nick::Nick;

/// The registry's own clock: milliseconds it has been running, summed over its runs. It
/// stands still while the registry is down and does not follow the wall clock, so a
/// binding lapses only after the registry itself ran for its whole reservation without
/// seeing the owner — a clock set wrong, even by a month, gives no nick away.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RegistryTime(pub u64);

impl RegistryTime {
    /// `self` plus `d`, saturating.
    pub fn plus(self, d: core::time::Duration) -> Self {
        Self(
            self.0
                .saturating_add(u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        )
    }
}

/// One nick's owner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Binding {
    /// The nick, as registered.
    pub nick: Nick,
    /// Its onion address.
    pub onion: OnionAddress,
    /// The fingerprint of its RSA key.
    pub fingerprint: Fingerprint,
    /// When the registry last saw its owner (registered, or leaving), by its own clock.
    pub last_seen: RegistryTime,
    /// The serial of the owner's certificate: a newer one (a new RSA key, certified by the
    /// same onion key) replaces this binding; an older one is refused.
    pub serial: u64,
}

/// One durable change to the bindings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum BindingOp {
    /// Creates or refreshes a binding.
    Bind(Binding),
    /// Forgets the binding of this nick (it expired).
    Release(Nick),
    /// The operator revoked this nick's binding (its onion key leaked, say): the binding
    /// goes, and its onion address may never register again.
    Revoke(Nick),
    /// The registry has run until this time: after a restart its clock goes on from the
    /// last one stored (a crash loses at most the time since, which only lengthens
    /// reservations).
    Clock(RegistryTime),
}

/// The bindings, by canonical nick, with the onion index.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Bindings {
    by_nick: BTreeMap<String, Binding>,
    by_onion: BTreeMap<OnionAddress, String>,
    /// How many bindings each RSA key holds.
    by_key: BTreeMap<Fingerprint, usize>,
    /// Onion addresses the operator revoked.
    revoked: BTreeSet<OnionAddress>,
    /// The registry's clock, as far as it was stored.
    clock: RegistryTime,
}

impl Bindings {
    /// Bindings as stored, the revoked onion addresses, and the registry's clock.
    pub fn from_stored(
        stored: impl IntoIterator<Item = Binding>,
        revoked: impl IntoIterator<Item = OnionAddress>,
        clock: RegistryTime,
    ) -> Self {
        let mut b = Self::default();
        for binding in stored {
            b.apply(&BindingOp::Bind(binding));
        }
        b.revoked.extend(revoked);
        b.apply(&BindingOp::Clock(clock));
        b
    }

    /// The registry's clock as last stored: it goes on from here.
    pub fn clock(&self) -> RegistryTime {
        self.clock
    }

    /// Applies `op`: the meaning every store must give it.
    pub fn apply(&mut self, op: &BindingOp) {
        match op {
            BindingOp::Bind(binding) => {
                self.clock = self.clock.max(binding.last_seen);
                let key = binding.nick.canonical();
                if let Some(old) = self.by_nick.insert(key.clone(), binding.clone()) {
                    self.by_onion.remove(&old.onion);
                    self.uncount(&old.fingerprint);
                }
                *self.by_key.entry(binding.fingerprint).or_default() += 1;
                // An onion bound to another nick before is this nick's now (its owner
                // registered it with its key: the caller checked).
                if let Some(other) = self.by_onion.insert(binding.onion, key.clone())
                    && other != key
                    && let Some(old) = self.by_nick.remove(&other)
                {
                    self.uncount(&old.fingerprint);
                }
            }
            BindingOp::Release(nick) => {
                self.remove(nick);
            }
            BindingOp::Revoke(nick) => {
                if let Some(old) = self.remove(nick) {
                    self.revoked.insert(old.onion);
                }
            }
            BindingOp::Clock(t) => self.clock = self.clock.max(*t),
        }
    }

    fn remove(&mut self, nick: &Nick) -> Option<Binding> {
        let old = self.by_nick.remove(&nick.canonical())?;
        self.by_onion.remove(&old.onion);
        self.uncount(&old.fingerprint);
        Some(old)
    }

    fn uncount(&mut self, fingerprint: &Fingerprint) {
        if let Some(n) = self.by_key.get_mut(fingerprint) {
            *n -= 1;
            if *n == 0 {
                self.by_key.remove(fingerprint);
            }
        }
    }

    /// How many bindings the RSA key `fingerprint` holds (lapsed ones included, until they
    /// are released).
    pub fn held_by_key(&self, fingerprint: &Fingerprint) -> usize {
        self.by_key.get(fingerprint).copied().unwrap_or(0)
    }

    /// Whether the operator revoked `onion`.
    pub fn is_revoked(&self, onion: &OnionAddress) -> bool {
        self.revoked.contains(onion)
    }

    /// The onion addresses the operator revoked.
    pub fn revoked(&self) -> impl Iterator<Item = &OnionAddress> {
        self.revoked.iter()
    }

    /// The binding of `nick` (canonical).
    pub fn of_nick(&self, canonical: &str) -> Option<&Binding> {
        self.by_nick.get(canonical)
    }

    /// The binding that holds `onion`.
    pub fn of_onion(&self, onion: &OnionAddress) -> Option<&Binding> {
        self.by_onion.get(onion).and_then(|k| self.by_nick.get(k))
    }

    /// Every binding, in nick order.
    pub fn iter(&self) -> impl Iterator<Item = &Binding> {
        self.by_nick.values()
    }

    /// How many.
    pub fn len(&self) -> usize {
        self.by_nick.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.by_nick.is_empty()
    }
}
