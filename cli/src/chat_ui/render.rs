//! How events read in the line interface. Text that came from the network (messages,
//! reasons) is cleaned of control characters, so a peer cannot drive the terminal.

use core::time::Duration;

use p2pchat_async_std::store::HistoryEntry;
use p2pchat_core::nick::Nick;
use p2pchat_core::peer::{
    ChatState, CloseReason, ContactView, Event, Outcome, QueuedMessage, WallTime,
};
use p2pchat_core::registry::Presence;

/// Replaces control characters (escape sequences, carriage returns, …) with `�`.
pub fn clean(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { '\u{FFFD}' } else { c })
        .collect()
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
        Event::ConnectionRequest {
            nick, fingerprint, ..
        } => one(format!(
            "* {nick} wants to chat (key {fingerprint}): /accept {nick} or /deny {nick} [reason]"
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
                "!!! nothing is sent to {nick} until you compare fingerprints out of band: /verify {nick} FINGERPRINT, or /trust {nick}"
            ),
        ],
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
}
