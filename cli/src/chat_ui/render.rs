//! How events read in the line interface. Text that came from the network (messages,
//! reasons) is cleaned ([`clean`]) so that a peer can neither drive the terminal nor fake
//! a line that seems to come from someone else; nicks show in their canonical lower case
//! (`Nick`'s `Display`), so no two users' nicks look alike.

use core::time::Duration;

use p2pchat_async_std::store::{HistoryEntry, HistoryItem};
use p2pchat_core::nick::Nick;
use p2pchat_core::peer::{
    ChatState, CloseReason, ConnectionLost, ContactView, Event, Outcome, QueuedMessage, WallTime,
};
use p2pchat_core::registry::Presence;

/// Cleans text from the network for the terminal: control characters (escape sequences,
/// carriage returns, new lines) become `�`; Unicode format characters (category Cf: bidi
/// embeddings, overrides and isolates, zero-width joiners and spaces, …) and the line and
/// paragraph separators are removed. Otherwise a message could move the cursor, start a
/// new line that reads `<alice> …`, or reorder what follows it on the line.
pub fn clean(text: &str) -> String {
    text.chars()
        .filter(|c| !is_format_or_separator(*c))
        .map(|c| if c.is_control() { '\u{FFFD}' } else { c })
        .collect()
}

/// Unicode general category Cf (as of Unicode 15.1), and U+2028 LINE SEPARATOR and
/// U+2029 PARAGRAPH SEPARATOR (categories Zl and Zp).
fn is_format_or_separator(c: char) -> bool {
    matches!(
        u32::from(c),
        0x00AD
            | 0x0600..=0x0605
            | 0x061C
            | 0x06DD
            | 0x070F
            | 0x0890..=0x0891
            | 0x08E2
            | 0x180E
            | 0x200B..=0x200F
            | 0x2028..=0x202E
            | 0x2060..=0x2064
            | 0x2066..=0x206F
            | 0xFEFF
            | 0xFFF9..=0xFFFB
            | 0x110BD
            | 0x110CD
            | 0x13430..=0x1343F
            | 0x1BCA0..=0x1BCA3
            | 0x1D173..=0x1D17A
            | 0xE0001
            | 0xE0020..=0xE007F
    )
}

/// The line(s) to print for `event`.
pub fn render(event: &Event) -> Vec<String> {
    let one = |s: String| vec![s];
    match event {
        Event::Registered => one("* registered: you are online".into()),
        Event::RegistrationFailed(e) => {
            one(format!("! the registry refused the registration: {e}"))
        }
        Event::Unregistered => one("* unregistered".into()),
        Event::RegistryLost { reason, retry_at } => one(format!(
            "! lost the registry: {}{}",
            clean(reason),
            if retry_at.is_some() {
                "; reconnecting"
            } else {
                ""
            }
        )),
        Event::RegistryError(e) => one(format!("! the registry closed our connection: {e}")),
        Event::Users { users, more } => {
            let mut lines = vec![format!("* {} online:", users.len())];
            for u in users {
                lines.push(format!(
                    "  {}  {}  key {}",
                    u.nick(),
                    u.onion().hostname(),
                    u.certificate.rsa.fingerprint()
                ));
            }
            if *more {
                lines.push("  … more: /users with a longer prefix".into());
            }
            lines
        }
        Event::Presence(Presence::Joined(r)) => one(format!("* {} is online", r.nick())),
        Event::Presence(Presence::Left(nick)) => one(format!("* {nick} went offline")),
        Event::Presence(Presence::Resync) => one(
            "* the registry skipped some presence updates; /users shows who is online now".into(),
        ),
        Event::ConnectionRequest {
            nick, fingerprint, ..
        } => one(format!(
            "* {nick} wants to chat (key {fingerprint}): /accept {nick} or /deny {nick} [reason]"
        )),
        Event::RequestGone { nick, .. } => one(format!(
            "* {nick}'s request to chat went away (they gave up, or it timed out)"
        )),
        Event::ChatState { nick, state } => one(match state {
            ChatState::LookingUp => format!("* {nick}: looking up…"),
            ChatState::Connecting => format!("* {nick}: connecting…"),
            ChatState::AwaitingAcceptance => format!("* {nick}: waiting for {nick} to accept…"),
            ChatState::Connected => format!("* {nick}: connected (end-to-end encrypted)"),
            ChatState::Retrying { attempt, .. } => {
                format!("* {nick}: reconnecting (attempt {attempt}); /retry {nick} to try now")
            }
            ChatState::Closing => format!("* {nick}: closing…"),
        }),
        // A dial that never connected is not a lost connection.
        Event::ConnectionLost {
            nick,
            reason: ConnectionLost::ConnectFailed(why),
        } => one(format!("! {nick}: could not connect: {}", clean(why))),
        Event::ConnectionLost { nick, reason } => one(format!(
            "! {nick}: connection lost: {}",
            clean(&reason.to_string())
        )),
        Event::Message { nick, text, .. } => one(format!("<{nick}> {}", clean(text))),
        Event::Sent { nick, id } => one(format!("* #{id} sent to {nick}")),
        Event::Delivered { nick, id } => one(format!("* #{id} delivered to {nick}")),
        Event::Failed { nick, id, reason } => one(format!(
            "! #{id} to {nick} not delivered: {}",
            clean(reason)
        )),
        Event::ChatClosed { nick, reason } => one(match reason {
            CloseReason::ByUs(r) => format!("* chat with {nick} closed ({})", clean(r)),
            CloseReason::ByPeer(r) => format!("* {nick} closed the chat ({})", clean(r)),
            CloseReason::Denied(r) => format!("* {nick} denied the chat ({})", clean(r)),
            CloseReason::Failed(f) => {
                format!("! chat with {nick} failed: {}", clean(&f.to_string()))
            }
        }),
        Event::IncomingRejected { nick, reason } => one(match nick {
            Some(n) => format!("! refused a connection claiming to be {n}: {reason}"),
            None => format!("! refused an incoming connection: {reason}"),
        }),
        Event::KeyChanged {
            nick,
            pinned,
            presented,
        } => vec![
            format!("!!! possible impersonation: the key of {nick} changed"),
            format!("!!!   pinned:    {pinned}"),
            format!("!!!   presented: {presented}"),
            format!(
                "!!! the other key is refused, and messages go only to the pinned one, until you compare fingerprints out of band: /verify {nick} FINGERPRINT (the pinned one keeps the pin, the new one replaces it), or /trust {nick} FINGERPRINT"
            ),
        ],
        Event::StoreBehindContact { nick, stored_upto } => one(format!(
            "! {nick} already has your messages up to #{stored_upto}: this data directory is an older copy (restored from a backup?); new messages to {nick} continue after #{stored_upto}"
        )),
        Event::ShutdownComplete => one("* bye".into()),
    }
}

/// How long ago wall-clock time `at` was, roughly.
fn ago(at: WallTime) -> String {
    let now = p2pchat_async_std::local::wall_clock();
    let secs = now.0.saturating_sub(at.0) / 1000;
    match secs {
        0..60 => format!("{secs} s ago"),
        60..3600 => format!("{} min ago", secs / 60),
        3600..86_400 => format!("{} h ago", secs / 3600),
        _ => format!("{} days ago", secs / 86_400),
    }
}

/// One line of `/contacts`.
pub fn contact_line(c: &ContactView) -> String {
    let key = match c.fingerprint {
        Some(f) => f.to_string(),
        None => "key not known yet".into(),
    };
    let mut marks = Vec::new();
    marks.push(
        if c.verified {
            "verified"
        } else {
            "not verified"
        }
        .to_owned(),
    );
    if c.blocked {
        marks.push("BLOCKED".into());
    }
    match c.online {
        Some(true) => marks.push("online".into()),
        Some(false) => marks.push("offline".into()),
        None => {}
    }
    if let Some(state) = &c.chat {
        marks.push(format!("chat {state:?}").to_lowercase());
    }
    if c.queued > 0 {
        marks.push(format!("{} waiting", c.queued));
    }
    if let Some(conflict) = &c.conflict {
        marks.push(format!("KEY CHANGED to {}", conflict.presented));
    }
    format!("  {}  {key}  ({})", c.nick, marks.join(", "))
}

/// One line of `/outbox`.
pub fn outbox_line(m: &QueuedMessage, next: Option<Duration>) -> String {
    let next = match next {
        Some(d) if d.is_zero() => "trying now".to_owned(),
        Some(d) => format!("next try in {} s", d.as_secs()),
        None => "waiting for a connection".to_owned(),
    };
    let preview: String = clean(&m.text).chars().take(40).collect();
    format!(
        "  #{} to {}, written {}, {next}: {preview}",
        m.id,
        m.to,
        ago(m.queued_at)
    )
}

/// One line of `/history`, a damaged row included.
pub fn history_item_line(item: &HistoryItem, nick: &Nick, me: &Nick) -> String {
    match item {
        HistoryItem::Entry(e) => history_line(e, me),
        HistoryItem::Damaged { outgoing, id } => {
            let who = if *outgoing { me } else { nick };
            format!("  [?] <{who}> #{id}: damaged in the store, cannot be read")
        }
        HistoryItem::Missing { count: 1 } => {
            "  [?] one message is missing here: the store was damaged or changed".into()
        }
        HistoryItem::Missing { count } => {
            format!("  [?] {count} messages are missing here: the store was damaged or changed")
        }
        HistoryItem::EndUnknown => {
            "  [?] the store's count of this history is damaged: later messages may be missing"
                .into()
        }
    }
}

/// One line of `/history`.
pub fn history_line(e: &HistoryEntry, me: &Nick) -> String {
    let receipt = match (&e.outcome, e.outgoing) {
        (_, false) => String::new(),
        (None, true) => " (waiting)".into(),
        (Some(Outcome::Delivered), true) => " (delivered)".into(),
        (Some(Outcome::Failed(why)), true) => format!(" (not delivered: {})", clean(why)),
    };
    let who = if e.outgoing { me } else { &e.nick };
    format!("  [{}] <{who}> {}{receipt}", ago(e.at), clean(&e.text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_damaged_history_row_is_a_line_that_says_so_with_its_sender_and_id() {
        let (bob, me) = (Nick::new("bob").unwrap(), Nick::new("alice").unwrap());
        let theirs = history_item_line(
            &HistoryItem::Damaged {
                outgoing: false,
                id: 7,
            },
            &bob,
            &me,
        );
        assert_eq!(
            theirs,
            "  [?] <bob> #7: damaged in the store, cannot be read"
        );
        let ours = history_item_line(
            &HistoryItem::Damaged {
                outgoing: true,
                id: 2,
            },
            &bob,
            &me,
        );
        assert!(ours.contains("<alice> #2"), "{ours}");
    }

    #[test]
    fn a_peer_cannot_send_terminal_escapes() {
        let event = Event::Message {
            nick: Nick::new("bob").unwrap(),
            id: 1,
            text: "hi\u{1b}[2Jthere\r\n".into(),
        };
        let line = &render(&event)[0];
        assert!(!line.chars().any(char::is_control), "{line:?}");
        assert!(line.starts_with("<bob> hi"));
    }

    #[test]
    fn bidi_controls_format_characters_and_separators_are_removed() {
        // A right-to-left override would show "<alice> hi" reversed text after it; a line
        // separator would start a line of its own that seems to come from alice.
        let text = "ok\u{202E}evil\u{202C} \u{2066}x\u{2069}\u{200B}\u{2028}<alice> pay me\u{2029}\u{FEFF}\u{00AD}end";
        let cleaned = clean(text);
        assert_eq!(cleaned, "okevil x<alice> pay meend");
        for c in cleaned.chars() {
            assert!(!is_format_or_separator(c) && !c.is_control(), "{c:?}");
        }
        // Ordinary text, wide characters and emoji pass untouched.
        assert_eq!(clean("héllo 你好 🙂"), "héllo 你好 🙂");
    }

    #[test]
    fn a_dial_that_never_connected_says_could_not_connect() {
        let event = Event::ConnectionLost {
            nick: Nick::new("bob").unwrap(),
            reason: ConnectionLost::ConnectFailed("SOCKS5 error: host unreachable".into()),
        };
        assert_eq!(
            render(&event),
            vec!["! bob: could not connect: SOCKS5 error: host unreachable".to_owned()]
        );
    }

    #[test]
    fn nicks_are_shown_in_their_canonical_lower_case() {
        let event = Event::Message {
            nick: Nick::new("AlIce").unwrap(),
            id: 1,
            text: "hi".into(),
        };
        assert_eq!(render(&event), vec!["<alice> hi".to_owned()]);
    }
}
