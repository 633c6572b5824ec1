//! Contacts: keys pinned on first use and never replaced silently, blocking, and the
//! delivery schedule that brings queued messages to contacts who were offline.

use core::time::Duration;

use super::durable::{ContactKey, ContactRecord, KeyConflict, Outcome, StoreOp, WallTime};
use super::{ChatState, CommandError, Event, Peer};
use crate::identity::{Fingerprint, KeyBindingCertificate};
use crate::nick::Nick;
use crate::registry::UserRecord;
use crate::time::Instant;

/// The key a conflict presented, to pin in place of the old one.
fn presented_key(conflict: KeyConflict) -> ContactKey {
    match conflict.certificate {
        Some((certificate, port)) => ContactKey::Pinned { certificate, port },
        None => ContactKey::Fingerprint(conflict.presented),
    }
}

/// What is known of a contact besides what is stored.
#[derive(Debug, Default)]
pub(super) struct ContactStatus {
    /// Registry presence, once we heard.
    pub(super) online: Option<bool>,
    /// The next delivery attempt for queued messages, and attempts so far.
    pub(super) next_delivery: Option<Instant>,
    pub(super) delivery_attempts: u32,
    /// A port the registry says the contact listens on now, not the pinned one: dialled
    /// until an attempt fails, pinned once their key answers there.
    pub(super) port_hint: Option<u16>,
    /// When presence last started an attempt (see [`PRESENCE_ATTEMPT_INTERVAL`]).
    pub(super) presence_attempt_at: Option<Instant>,
    /// An attempt at a hinted port failed, and none at the pinned port was made since:
    /// the next goes to the pinned port, whatever the registry says meanwhile, so a
    /// registry pushing port after port cannot keep us from the pinned one.
    pub(super) hint_failed: bool,
}

/// The registry's presence starts at most one attempt per contact in this interval: a
/// hostile registry pushing `Joined` (with ports of its choosing) over and over must not
/// make us dial a contact at its pace.
pub(super) const PRESENCE_ATTEMPT_INTERVAL: Duration = Duration::from_secs(30);

/// One contact, as a user interface shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContactView {
    /// Their nick.
    pub nick: Nick,
    /// The fingerprint of their pinned key (or of the key the user gave).
    pub fingerprint: Option<Fingerprint>,
    /// Whether the user verified it out of band.
    pub verified: bool,
    /// Whether their requests are refused.
    pub blocked: bool,
    /// Registry presence, if known.
    pub online: Option<bool>,
    /// Messages waiting for them.
    pub queued: usize,
    /// Messages from them the user has not marked read.
    pub unread: usize,
    /// When queued messages are next tried (if no chat is open).
    pub next_delivery: Option<Instant>,
    /// A different key was presented, proven, and refused.
    pub conflict: Option<KeyConflict>,
    /// The chat's state, if one is open.
    pub chat: Option<ChatState>,
}

impl Peer {
    /// Every contact, in nick order.
    pub fn contacts(&self) -> Vec<ContactView> {
        self.state
            .contacts
            .values()
            .map(|c| self.contact_view(c))
            .collect()
    }

    /// One contact.
    pub fn contact(&self, nick: &Nick) -> Option<ContactView> {
        self.state.contacts.get(nick).map(|c| self.contact_view(c))
    }

    fn contact_view(&self, c: &ContactRecord) -> ContactView {
        let status = self.status.get(&c.nick);
        ContactView {
            nick: c.nick.clone(),
            fingerprint: c.key.fingerprint(),
            verified: c.verified,
            blocked: c.blocked,
            online: status.and_then(|s| s.online),
            queued: self.state.queued_len(&c.nick),
            unread: c.unread as usize,
            next_delivery: status.and_then(|s| s.next_delivery),
            conflict: c.conflict.as_deref().cloned(),
            chat: self.chats.get(&c.nick).map(|chat| chat.state.clone()),
        }
    }

    /// Pins `fingerprint` for `nick` as verified (the `[contacts]` configuration): a record
    /// or handshake with another key for `nick` is refused.
    pub fn import_verified(&mut self, now: Instant, nick: &Nick, fingerprint: Fingerprint) {
        self.now = now;
        self.ensure_contact(nick);
        let Some(mut record) = self.state.contacts.get(nick).cloned() else {
            return;
        };
        if record.verified && record.key.fingerprint() == Some(fingerprint) {
            return;
        }
        if record.key.fingerprint() != Some(fingerprint) {
            record.key = ContactKey::Fingerprint(fingerprint);
        }
        record.verified = true;
        self.store(StoreOp::Contact(record));
    }

    /// The user compared `fingerprint` with `nick` out of band: the contact is verified
    /// with that key. Under a key conflict it may name either key: the pinned one (which
    /// stays, and the conflict is cleared) or the one presented (which replaces it).
    pub fn verify(
        &mut self,
        now: Instant,
        nick: &Nick,
        fingerprint: Fingerprint,
    ) -> Result<(), CommandError> {
        self.now = now;
        let mut record = self.contact_record(nick)?;
        match record.conflict.take() {
            Some(c) if c.presented == fingerprint => record.key = presented_key(*c),
            Some(c) if c.pinned == fingerprint => {}
            Some(_) => return Err(CommandError::FingerprintMismatch(nick.clone())),
            None if record.key.fingerprint() == Some(fingerprint) => {}
            None => return Err(CommandError::FingerprintMismatch(nick.clone())),
        }
        record.verified = true;
        self.store(StoreOp::Contact(record));
        self.conflict_resolved(nick);
        Ok(())
    }

    /// Settles a key conflict without an out-of-band check: the user names the key to keep
    /// (`fingerprint`), the pinned one or the one presented. Nothing is trusted blindly: a
    /// contact whose key has not changed is refused, and so is any other fingerprint.
    pub fn trust(
        &mut self,
        now: Instant,
        nick: &Nick,
        fingerprint: Fingerprint,
    ) -> Result<(), CommandError> {
        self.now = now;
        let mut record = self.contact_record(nick)?;
        match record.conflict.take() {
            None => return Err(CommandError::KeyNotChanged(nick.clone())),
            Some(c) if c.presented == fingerprint => {
                record.key = presented_key(*c);
                record.verified = false;
            }
            Some(c) if c.pinned == fingerprint => {}
            Some(_) => return Err(CommandError::FingerprintMismatch(nick.clone())),
        }
        self.store(StoreOp::Contact(record));
        self.conflict_resolved(nick);
        Ok(())
    }

    /// Refuses `nick`'s requests from now on, without asking; ends any chat with them.
    pub fn block(&mut self, now: Instant, nick: &Nick) -> Result<(), CommandError> {
        self.now = now;
        if *nick == self.identity.nick {
            return Err(CommandError::OwnNick);
        }
        self.check_room_for_contact(nick)?;
        self.ensure_contact(nick);
        let mut record = self.contact_record(nick)?;
        if !record.blocked {
            record.blocked = true;
            self.store(StoreOp::Contact(record));
        }
        if let Some(s) = self.status.get_mut(nick) {
            s.next_delivery = None;
        }
        let pending: Vec<u64> = self
            .decisions
            .iter()
            .filter(|(_, conn)| {
                self.conns
                    .get(conn)
                    .is_some_and(|c| c.nick.as_ref() == Some(nick))
            })
            .map(|(r, _)| *r)
            .collect();
        for request in pending {
            let _ = self.deny(now, request, "blocked");
        }
        if self.chats.contains_key(nick) {
            let _ = self.close_chat(now, nick, "blocked");
        }
        Ok(())
    }

    /// Undoes [`Peer::block`].
    pub fn unblock(&mut self, now: Instant, nick: &Nick) -> Result<(), CommandError> {
        self.now = now;
        let mut record = self.contact_record(nick)?;
        if record.blocked {
            record.blocked = false;
            self.store(StoreOp::Contact(record));
            if self.state.queued_len(nick) > 0 {
                self.deliver_now(nick);
            }
        }
        Ok(())
    }

    /// Withdraws queued message `id` to `nick`: it will not be sent (again). If it was
    /// sent already, the contact may have seen it.
    pub fn cancel(&mut self, now: Instant, nick: &Nick, id: u64) -> Result<(), CommandError> {
        self.now = now;
        if !self.state.queued(nick).any(|m| m.id == id) {
            return Err(CommandError::NotQueued(nick.clone(), id));
        }
        self.resolve(nick, id, Outcome::Failed("withdrawn by you".into()));
        Ok(())
    }

    /// Makes `nick` a contact if it is not one yet (nothing pinned).
    pub(super) fn ensure_contact(&mut self, nick: &Nick) {
        if self.state.contacts.contains_key(nick) {
            return;
        }
        let instance = self.fresh_u64();
        self.store(StoreOp::Contact(ContactRecord::new(nick.clone(), instance)));
    }

    /// Forgets `nick` if it is a contact in name only: nothing pinned, nothing queued,
    /// not blocked, not verified (a chat attempt with a nick that was not online).
    pub(super) fn forget_if_unknown(&mut self, nick: &Nick) {
        let unknown = self.state.contacts.get(nick).is_some_and(|c| {
            c.key == ContactKey::Unknown && !c.blocked && !c.verified && c.received_upto == 0
        });
        if unknown && self.state.queued_len(nick) == 0 && !self.chats.contains_key(nick) {
            self.store(StoreOp::ForgetContact(nick.clone()));
            self.status.remove(nick);
            self.mailboxes.remove(nick);
        }
    }

    /// Pins `certificate` as `nick`'s key, unless a key is pinned already.
    pub(super) fn pin(&mut self, nick: &Nick, certificate: KeyBindingCertificate, port: u16) {
        let Some(mut record) = self.state.contacts.get(nick).cloned() else {
            debug_assert!(false, "pinning a key for {nick}, who is not a contact");
            return;
        };
        match &record.key {
            ContactKey::Pinned {
                certificate: pinned,
                port: pinned_port,
            } => {
                debug_assert!(
                    pinned.rsa == certificate.rsa && pinned.onion == certificate.onion,
                    "re-pinning another key for {nick} without the user"
                );
                if *pinned_port == port {
                    return;
                }
            }
            ContactKey::Fingerprint(f) => {
                debug_assert_eq!(*f, certificate.rsa.fingerprint());
            }
            ContactKey::Unknown => {}
        }
        record.key = ContactKey::Pinned { certificate, port };
        self.store(StoreOp::Contact(record));
    }

    /// Another key was presented for contact `nick`: refuse it, loudly.
    pub(super) fn key_conflict(
        &mut self,
        nick: &Nick,
        pinned: Fingerprint,
        presented: KeyBindingCertificate,
        port: u16,
    ) {
        let conflict = KeyConflict {
            pinned,
            presented: presented.rsa.fingerprint(),
            certificate: Some((presented, port)),
        };
        self.record_conflict(nick, conflict);
    }

    /// Records a proven key conflict for contact `nick` (kept with the contact). Deliveries
    /// go on: an outbound handshake reaches only the pinned key, so whoever presented the
    /// other one gains nothing from them, and cannot stop them either.
    pub(super) fn record_conflict(&mut self, nick: &Nick, conflict: KeyConflict) {
        let Some(mut record) = self.state.contacts.get(nick).cloned() else {
            debug_assert!(false, "a key conflict for {nick}, who is not a contact");
            return;
        };
        let known = record
            .conflict
            .as_ref()
            .is_some_and(|c| c.presented == conflict.presented);
        if known && conflict.certificate.is_none() {
            return;
        }
        let event = Event::KeyChanged {
            nick: nick.clone(),
            pinned: conflict.pinned,
            presented: conflict.presented,
        };
        if record.conflict.as_deref() != Some(&conflict) {
            record.conflict = Some(Box::new(conflict));
            self.store(StoreOp::Contact(record));
        }
        if !known {
            self.emit(event);
        }
    }

    fn conflict_resolved(&mut self, nick: &Nick) {
        if self.state.queued_len(nick) > 0 {
            self.deliver_now(nick);
        }
    }

    /// Registry presence for `nick` changed. A contact who came online is tried at once:
    /// a chat waiting to reconnect, or queued messages.
    pub(super) fn presence_changed(&mut self, nick: &Nick, online: bool) {
        if !self.state.contacts.contains_key(nick) {
            return;
        }
        let now = self.now;
        let status = self.status.entry(nick.clone()).or_default();
        status.online = Some(online);
        let recently = status
            .presence_attempt_at
            .is_some_and(|at| now.saturating_duration_since(at) < PRESENCE_ATTEMPT_INTERVAL);
        if !online || recently {
            return;
        }
        let retrying = matches!(
            self.chats.get(nick).map(|c| &c.state),
            Some(ChatState::Retrying { .. })
        );
        let waiting = !self.chats.contains_key(nick) && self.state.queued_len(nick) > 0;
        if retrying || waiting {
            status.presence_attempt_at = Some(now);
        }
        if retrying {
            self.begin_attempt(nick);
        } else if waiting {
            self.deliver_now(nick);
        }
    }

    /// A contact registered with their pinned key and onion at another port (they changed
    /// `host.port`, or, without Tor, restarted on another one): the next attempt dials
    /// there. The registry's word is only a hint (nothing signs the port it relays): the
    /// port is pinned once their key answers there ([`Peer::port_proven`]); when an
    /// attempt there fails the hint is dropped and the next attempt goes to the pinned
    /// port ([`ContactStatus::hint_failed`]), so a lying registry can at most make every
    /// other attempt a wasted one. A record with another key or onion changes nothing:
    /// dialling goes to the pinned onion, where only the pinned key can answer.
    pub(super) fn follow_port(&mut self, record: &UserRecord) {
        let nick = record.nick();
        let Some(ContactKey::Pinned { certificate, port }) =
            self.state.contacts.get(nick).map(|c| &c.key)
        else {
            return;
        };
        if certificate.rsa != record.certificate.rsa
            || certificate.onion != record.certificate.onion
        {
            return;
        }
        let hint = (*port != record.port).then_some(record.port);
        let status = self.status.entry(nick.clone()).or_default();
        if !status.hint_failed {
            status.port_hint = hint;
        }
    }

    /// The contact's key answered a dial at `port`: pin it, if it is not the pinned one.
    pub(super) fn port_proven(&mut self, nick: &Nick, port: u16) {
        if let Some(status) = self.status.get_mut(nick) {
            status.port_hint = None;
        }
        if let Some(ContactKey::Pinned { certificate, .. }) =
            self.state.contacts.get(nick).map(|c| c.key.clone())
        {
            self.pin(nick, certificate, port);
        }
    }

    /// The registry says we missed presence changes: whether contacts are online is not
    /// known any more, and each with queued messages may have come online meanwhile.
    pub(super) fn presence_lost(&mut self) {
        let waiting: Vec<Nick> = self
            .state
            .contacts
            .keys()
            .filter(|nick| self.state.queued_len(nick) > 0)
            .cloned()
            .collect();
        for status in self.status.values_mut() {
            status.online = None;
        }
        for nick in waiting {
            self.deliver_now(&nick);
        }
    }

    /// Opens a chat to deliver what is queued for `nick`, if nothing stands in the way.
    pub(super) fn deliver_now(&mut self, nick: &Nick) {
        if self.chats.contains_key(nick) || self.check_deliverable(nick).is_err() {
            return;
        }
        if self.chats.len() >= self.config.max_chats {
            // Try again later, when a chat may have ended.
            return self.schedule_delivery(nick);
        }
        if let Some(s) = self.status.get_mut(nick) {
            s.next_delivery = None;
        }
        self.open_chat(nick);
    }

    /// Whether a delivery attempt may start: `nick` is a contact we can reach out to.
    fn check_deliverable(&self, nick: &Nick) -> Result<(), CommandError> {
        if !self.state.contacts.contains_key(nick) {
            return Err(CommandError::NoContact(nick.clone()));
        }
        self.check_can_write(nick)
    }

    /// A copy of `nick`'s record, to change and store.
    fn contact_record(&self, nick: &Nick) -> Result<ContactRecord, CommandError> {
        self.state
            .contacts
            .get(nick)
            .cloned()
            .ok_or_else(|| CommandError::NoContact(nick.clone()))
    }

    /// Schedules the next delivery attempt for `nick`'s queued messages, with backoff and
    /// jitter.
    pub(super) fn schedule_delivery(&mut self, nick: &Nick) {
        if self.check_deliverable(nick).is_err() {
            return;
        }
        let jitter = self.jitter();
        let now = self.now;
        let backoff = self.config.delivery_backoff.clone();
        let status = self.status.entry(nick.clone()).or_default();
        status.delivery_attempts = status.delivery_attempts.saturating_add(1);
        status.next_delivery = Some(now + backoff.delay(status.delivery_attempts, jitter));
    }

    /// A chat with `nick` connected: its delivery schedule starts over.
    pub(super) fn delivery_succeeded(&mut self, nick: &Nick) {
        if let Some(s) = self.status.get_mut(nick) {
            s.next_delivery = None;
            s.delivery_attempts = 0;
            s.online = Some(true);
        }
    }

    /// After a restart: everything queued is tried at once.
    pub(super) fn schedule_restored_deliveries(&mut self) {
        let now = self.now;
        let nicks: Vec<Nick> = self.state.outbox.keys().cloned().collect();
        for nick in nicks {
            if self.check_deliverable(&nick).is_ok() {
                self.status.entry(nick).or_default().next_delivery = Some(now);
            }
        }
    }

    /// When a queued message expires, as an instant of ours.
    fn expiry_instant(&self, queued_at: WallTime) -> Instant {
        let expires = queued_at.plus(self.config.outbox_expiry);
        let after_start = Duration::from_millis(expires.0.saturating_sub(self.wall_at_start.0));
        self.started + after_start
    }

    pub(super) fn contact_timers(&self) -> impl Iterator<Item = Instant> + '_ {
        let deliveries = self.status.values().filter_map(|s| s.next_delivery);
        let expiry = self
            .state
            .outbox
            .values()
            .filter_map(|q| q.front())
            .map(|m| self.expiry_instant(m.queued_at))
            .min();
        deliveries.chain(expiry)
    }

    pub(super) fn contact_timeouts(&mut self) {
        let now = self.now;
        let due: Vec<Nick> = self
            .status
            .iter()
            .filter(|(_, s)| s.next_delivery.is_some_and(|t| t <= now))
            .map(|(n, _)| n.clone())
            .collect();
        for nick in due {
            if let Some(s) = self.status.get_mut(&nick) {
                s.next_delivery = None;
            }
            if self.state.queued_len(&nick) > 0 {
                self.deliver_now(&nick);
            }
        }
        let expired: Vec<(Nick, u64)> = self
            .state
            .outbox
            .iter()
            .flat_map(|(nick, q)| q.iter().map(move |m| (nick, m)))
            .filter(|(_, m)| self.expiry_instant(m.queued_at) <= now)
            .map(|(n, m)| (n.clone(), m.id))
            .collect();
        let days = self.config.outbox_expiry.as_secs() / 86_400;
        for (nick, id) in expired {
            let why = format!("not delivered within {days} days; it expired");
            self.resolve(&nick, id, Outcome::Failed(why));
        }
    }
}
