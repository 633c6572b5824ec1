//! Records as schemas 1 to 3 wrote them, before messages carried nonces, so that such a
//! store is migrated instead of refused. A contact converts to today's record with no
//! nonce known ("taken on trust" by the check of a contact's record against ours) and its
//! acknowledged mark just below its next id; a queued message converts with nonce 0.

use p2pchat_core::nick::Nick;
use p2pchat_core::peer::{ContactKey, ContactRecord, KeyConflict, QueuedMessage, WallTime};
use serde::{Deserialize, Serialize};

use super::schema_v2::ContactRecordV2;

/// A peer's contact.
#[derive(Serialize, Deserialize)]
pub(super) struct ContactRecordV3 {
    pub(super) nick: Nick,
    pub(super) key: ContactKey,
    pub(super) verified: bool,
    pub(super) blocked: bool,
    pub(super) our_instance: u64,
    pub(super) next_id: u64,
    pub(super) peer_instance: Option<u64>,
    pub(super) received_upto: u64,
    pub(super) conflict: Option<Box<KeyConflict>>,
}

/// Schema 2 → 3: a contact gained its key conflict (schema 2 forgot them at restart).
impl From<ContactRecordV2> for ContactRecordV3 {
    fn from(c: ContactRecordV2) -> Self {
        Self {
            nick: c.nick,
            key: c.key,
            verified: c.verified,
            blocked: c.blocked,
            our_instance: c.our_instance,
            next_id: c.next_id,
            peer_instance: c.peer_instance,
            received_upto: c.received_upto,
            conflict: None,
        }
    }
}

impl From<ContactRecordV3> for ContactRecord {
    fn from(c: ContactRecordV3) -> Self {
        let mut record = ContactRecord::new(c.nick, c.our_instance);
        record.key = c.key;
        record.verified = c.verified;
        record.blocked = c.blocked;
        record.next_id = c.next_id;
        record.peer_instance = c.peer_instance;
        record.received_upto = c.received_upto;
        record.conflict = c.conflict;
        // Every id below the next may have been acknowledged; with nonce 0 (not known),
        // a contact's record of any of them is taken on trust.
        record.delivered_upto = c.next_id.saturating_sub(1);
        record
    }
}

/// A queued message.
#[derive(Serialize, Deserialize)]
pub(super) struct QueuedMessageV3 {
    pub(super) to: Nick,
    pub(super) id: u64,
    pub(super) text: String,
    pub(super) queued_at: WallTime,
}

impl From<QueuedMessageV3> for QueuedMessage {
    fn from(m: QueuedMessageV3) -> Self {
        Self {
            to: m.to,
            id: m.id,
            nonce: 0,
            text: m.text,
            queued_at: m.queued_at,
        }
    }
}
