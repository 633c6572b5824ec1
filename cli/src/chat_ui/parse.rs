//! The line interface's commands, parsed from one line of input.

/// What one input line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UiCommand {
    /// `/users [PREFIX]`
    Users(String),
    /// `/connect NICK`
    Connect(String),
    /// `/accept NICK`
    Accept(String),
    /// `/deny NICK [REASON]`
    Deny(String, String),
    /// `/chats`
    Chats,
    /// `/switch NICK`
    Switch(String),
    /// `/msg NICK TEXT`
    Msg(String, String),
    /// `/close NICK`
    Close(String),
    /// `/retry NICK`
    Retry(String),
    /// `/fingerprint [NICK]`
    Fingerprint(Option<String>),
    /// `/contacts`
    Contacts,
    /// `/outbox`
    Outbox,
    /// `/history NICK [N]`
    History(String, usize),
    /// `/verify NICK FINGERPRINT`
    Verify(String, String),
    /// `/trust NICK FINGERPRINT`
    Trust(String, String),
    /// `/block NICK`
    Block(String),
    /// `/unblock NICK`
    Unblock(String),
    /// `/cancel [NICK] ID`
    Cancel(Option<String>, u64),
    /// `/quit`
    Quit,
    /// `/help`
    Help,
    /// Plain text: a message to the current chat.
    Text(String),
    /// An empty line.
    Nothing,
}

/// Most history entries one `/history` shows.
pub const MAX_HISTORY_PAGE: usize = 1000;

/// The help text.
pub const HELP: &str = "\
commands:
  /users [PREFIX]        list who is online
  /connect NICK          open a chat
  /accept NICK           accept NICK's chat request
  /deny NICK [REASON]    deny it (NICK sees the reason)
  /chats                 your chats and their states
  /switch NICK           make NICK's chat the current one
  /msg NICK TEXT         send TEXT to NICK, online or not (it waits until delivered)
  TEXT                   send TEXT to the current chat
  /contacts              your contacts: key, verified, blocked, online, waiting messages
  /outbox                messages waiting to be delivered, and the next attempt
  /history NICK [N]      the last N (20) messages with NICK
  /cancel [NICK] ID      withdraw a waiting message
  /verify NICK FPR       NICK's key is FPR: compared out of band (settles a key change)
  /trust NICK FPR        settle NICK's key change for key FPR without comparing it
  /block NICK            refuse NICK's requests without asking (/unblock NICK)
  /close NICK            close a chat
  /retry NICK            reconnect (or deliver waiting messages) now
  /fingerprint [NICK]    your key's fingerprint, or NICK's
  /quit                  close chats, unregister, exit
  //TEXT                 send TEXT starting with a slash";

/// Parses one line. Errors are sentences for the user.
pub fn parse(line: &str) -> Result<UiCommand, String> {
    let line = line.trim_end_matches(['\r', '\n']);
    if line.trim().is_empty() {
        return Ok(UiCommand::Nothing);
    }
    if let Some(text) = line.strip_prefix("//") {
        return Ok(UiCommand::Text(format!("/{text}")));
    }
    let Some(rest) = line.strip_prefix('/') else {
        return Ok(UiCommand::Text(line.to_owned()));
    };
    let (name, args) = match rest.split_once(char::is_whitespace) {
        Some((n, a)) => (n, a.trim()),
        None => (rest, ""),
    };
    let (first, tail) = match args.split_once(char::is_whitespace) {
        Some((f, t)) => (f.to_owned(), t.trim().to_owned()),
        None => (args.to_owned(), String::new()),
    };
    let need_nick = |usage: &str| {
        if first.is_empty() {
            Err(format!("usage: {usage}"))
        } else {
            Ok(first.clone())
        }
    };
    match name {
        "users" => Ok(UiCommand::Users(first.clone())),
        "connect" => Ok(UiCommand::Connect(need_nick("/connect NICK")?)),
        "accept" => Ok(UiCommand::Accept(need_nick("/accept NICK")?)),
        "deny" => Ok(UiCommand::Deny(need_nick("/deny NICK [REASON]")?, tail)),
        "chats" => Ok(UiCommand::Chats),
        "switch" => Ok(UiCommand::Switch(need_nick("/switch NICK")?)),
        "msg" => {
            let nick = need_nick("/msg NICK TEXT")?;
            if tail.is_empty() {
                return Err("usage: /msg NICK TEXT".into());
            }
            Ok(UiCommand::Msg(nick, tail))
        }
        "close" => Ok(UiCommand::Close(need_nick("/close NICK")?)),
        "retry" => Ok(UiCommand::Retry(need_nick("/retry NICK")?)),
        "fingerprint" => Ok(UiCommand::Fingerprint(
            (!first.is_empty()).then(|| first.clone()),
        )),
        "contacts" => Ok(UiCommand::Contacts),
        "outbox" => Ok(UiCommand::Outbox),
        "history" => {
            let nick = need_nick("/history NICK [N]")?;
            let n = if tail.is_empty() {
                20
            } else {
                tail.parse()
                    .ok()
                    .filter(|n| (1..=MAX_HISTORY_PAGE).contains(n))
                    .ok_or_else(|| {
                        format!("usage: /history NICK [N], N from 1 to {MAX_HISTORY_PAGE}")
                    })?
            };
            Ok(UiCommand::History(nick, n))
        }
        "verify" => {
            let nick = need_nick("/verify NICK FINGERPRINT")?;
            if tail.is_empty() {
                return Err("usage: /verify NICK FINGERPRINT".into());
            }
            Ok(UiCommand::Verify(nick, tail))
        }
        "trust" => {
            let nick = need_nick("/trust NICK FINGERPRINT")?;
            if tail.is_empty() {
                return Err(
                    "usage: /trust NICK FINGERPRINT (the pinned key or the one presented)".into(),
                );
            }
            Ok(UiCommand::Trust(nick, tail))
        }
        "block" => Ok(UiCommand::Block(need_nick("/block NICK")?)),
        "unblock" => Ok(UiCommand::Unblock(need_nick("/unblock NICK")?)),
        "cancel" => {
            let usage = || "usage: /cancel [NICK] ID".to_owned();
            match (first.parse::<u64>(), tail.parse::<u64>()) {
                (Ok(id), _) if tail.is_empty() => Ok(UiCommand::Cancel(None, id)),
                (_, Ok(id)) if !first.is_empty() => Ok(UiCommand::Cancel(Some(first.clone()), id)),
                _ => Err(usage()),
            }
        }
        "quit" | "exit" => Ok(UiCommand::Quit),
        "help" => Ok(UiCommand::Help),
        other => Err(format!("unknown command /{other}; /help lists them")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_and_their_arguments_are_recognised() {
        assert_eq!(parse("/connect bob"), Ok(UiCommand::Connect("bob".into())));
        assert_eq!(
            parse("/deny bob  not now please"),
            Ok(UiCommand::Deny("bob".into(), "not now please".into()))
        );
        assert_eq!(
            parse("/deny bob"),
            Ok(UiCommand::Deny("bob".into(), "".into()))
        );
        assert_eq!(
            parse("/msg bob hello there"),
            Ok(UiCommand::Msg("bob".into(), "hello there".into()))
        );
        assert_eq!(parse("/users"), Ok(UiCommand::Users("".into())));
        assert_eq!(parse("/users al"), Ok(UiCommand::Users("al".into())));
        assert_eq!(parse("/fingerprint"), Ok(UiCommand::Fingerprint(None)));
        assert_eq!(parse("/quit\r\n"), Ok(UiCommand::Quit));
        assert_eq!(
            parse("/history bob"),
            Ok(UiCommand::History("bob".into(), 20))
        );
        assert_eq!(
            parse("/history bob 5"),
            Ok(UiCommand::History("bob".into(), 5))
        );
        assert!(parse("/history bob 1000000").is_err());
        assert!(parse("/history bob 0").is_err());
        assert_eq!(parse("/cancel 7"), Ok(UiCommand::Cancel(None, 7)));
        assert_eq!(
            parse("/cancel bob 7"),
            Ok(UiCommand::Cancel(Some("bob".into()), 7))
        );
        assert_eq!(
            parse("/verify bob 12 34"),
            Ok(UiCommand::Verify("bob".into(), "12 34".into()))
        );
        assert_eq!(
            parse("/trust bob 12 34"),
            Ok(UiCommand::Trust("bob".into(), "12 34".into()))
        );
    }

    #[test]
    fn plain_text_and_escaped_slashes_are_messages() {
        assert_eq!(parse("hi bob"), Ok(UiCommand::Text("hi bob".into())));
        assert_eq!(parse("//me waves"), Ok(UiCommand::Text("/me waves".into())));
        assert_eq!(parse("   "), Ok(UiCommand::Nothing));
    }

    #[test]
    fn missing_arguments_and_unknown_commands_explain_themselves() {
        assert_eq!(parse("/connect"), Err("usage: /connect NICK".into()));
        assert_eq!(parse("/msg bob"), Err("usage: /msg NICK TEXT".into()));
        // /trust always names the key it accepts.
        assert!(parse("/trust bob").unwrap_err().contains("FINGERPRINT"));
        assert!(parse("/frobnicate").unwrap_err().contains("/help"));
    }
}
