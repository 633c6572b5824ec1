//! How events read in the line interface. Text that came from the network (messages,
//! reasons) is cleaned of control characters, so a peer cannot drive the terminal.

use p2pchat_core::peer::{ChatState, CloseReason, Event};
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
        Event::ShutdownComplete => one("* bye".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use p2pchat_core::nick::Nick;

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
