//! Contact records as schema 2 wrote them, before a key conflict was kept with its contact,
//! so that a schema 2 store is migrated instead of refused. Each converts to schema 3's
//! record with no conflict (schema 2 forgot conflicts at every restart).

use p2pchat_core::nick::Nick;
use p2pchat_core::peer::ContactKey;
use serde::{Deserialize, Serialize};

/// A peer's contact.
#[derive(Serialize, Deserialize)]
pub(super) struct ContactRecordV2 {
    pub(super) nick: Nick,
    pub(super) key: ContactKey,
    pub(super) verified: bool,
    pub(super) blocked: bool,
    pub(super) our_instance: u64,
    pub(super) next_id: u64,
    pub(super) peer_instance: Option<u64>,
    pub(super) received_upto: u64,
}
