//! The full-screen interface's own state: what is on screen and being typed — the
//! conversations shown, the input line, scrolling, notices. What the core knows (contacts,
//! chats, requests, the registry) is read from the view the runtime publishes, never kept.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, VecDeque};

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use p2pchat_async_std::store::HistoryEntry;
use p2pchat_core::nick::Nick;
use p2pchat_core::peer::{Event, Outcome, PeerView, WallTime};

use crate::chat_ui::Screen;
use crate::chat_ui::render::clean;

/// Most notices kept (the status lines the line interface would print).
const MAX_NOTICES: usize = 200;
/// Most entries kept per conversation on screen (the store keeps all of history).
const MAX_ENTRIES: usize = 1000;
/// Most lines kept in the input history.
const MAX_INPUT_HISTORY: usize = 100;
/// Longest input line, in bytes: a message's limit and room for a command before it. What
/// is typed or pasted beyond it is dropped, and the user told.
const MAX_INPUT_BYTES: usize = p2pchat_core::peer_wire::MAX_MESSAGE_LEN + 64;

/// What happened to one of our messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Receipt {
    /// Stored; waiting for a connection.
    Queued,
    /// Went out; not yet acknowledged.
    Sent,
    /// Acknowledged by the contact.
    Delivered,
    /// Will not be delivered (why).
    Failed(String),
}

/// One message on screen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    /// Wall-clock time it was written or arrived.
    pub(crate) at: WallTime,
    /// Ours (with a receipt) or theirs.
    pub(crate) receipt: Option<Receipt>,
    /// The sender's id.
    pub(crate) id: u64,
    /// Cleaned text (never raw network text).
    pub(crate) text: String,
}

/// The line being typed.
#[derive(Debug, Default)]
pub(crate) struct Input {
    pub(crate) text: String,
    /// Cursor, in characters.
    pub(crate) cursor: usize,
    history: VecDeque<String>,
    /// Which history line Up/Down shows, counted from the newest.
    browsing: Option<usize>,
}

impl Input {
    fn byte_at(&self, chars: usize) -> usize {
        self.text
            .char_indices()
            .nth(chars)
            .map_or(self.text.len(), |(i, _)| i)
    }

    fn len(&self) -> usize {
        self.text.chars().count()
    }

    /// Inserts `text` at the cursor, as much of it as fits in [`MAX_INPUT_BYTES`]. Returns
    /// whether all of it did.
    fn insert(&mut self, text: &str) -> bool {
        let room = MAX_INPUT_BYTES.saturating_sub(self.text.len());
        let mut fits = text.len().min(room);
        while !text.is_char_boundary(fits) {
            fits -= 1;
        }
        let at = self.byte_at(self.cursor);
        self.text.insert_str(at, &text[..fits]);
        self.cursor += text[..fits].chars().count();
        fits == text.len()
    }

    fn backspace(&mut self) {
        if self.cursor > 0 {
            self.cursor -= 1;
            let at = self.byte_at(self.cursor);
            self.text.remove(at);
        }
    }

    fn delete(&mut self) {
        if self.cursor < self.len() {
            let at = self.byte_at(self.cursor);
            self.text.remove(at);
        }
    }

    /// The text before the cursor (to place the cursor by display width).
    pub(crate) fn before_cursor(&self) -> &str {
        &self.text[..self.byte_at(self.cursor)]
    }

    fn set(&mut self, text: String) {
        self.cursor = text.chars().count();
        self.text = text;
    }

    fn take(&mut self) -> String {
        let line = std::mem::take(&mut self.text);
        self.cursor = 0;
        self.browsing = None;
        if !line.trim().is_empty() && self.history.front() != Some(&line) {
            self.history.push_front(line.clone());
            self.history.truncate(MAX_INPUT_HISTORY);
        }
        line
    }

    fn older(&mut self) {
        let next = self.browsing.map_or(0, |i| i + 1);
        if let Some(line) = self.history.get(next).cloned() {
            self.browsing = Some(next);
            self.set(line);
        }
    }

    fn newer(&mut self) {
        match self.browsing {
            Some(0) | None => {
                self.browsing = None;
                self.set(String::new());
            }
            Some(i) => {
                self.browsing = Some(i - 1);
                let line = self.history.get(i - 1).cloned().unwrap_or_default();
                self.set(line);
            }
        }
    }
}

/// What a key asks the interface to do.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Action {
    /// Nothing beyond redrawing.
    None,
    /// Run this line (a /command or text for the current chat).
    Submit(String),
    /// Show another conversation (+1 next, -1 previous).
    Cycle(i32),
    /// Reconnect the current chat (or deliver its waiting messages) now.
    RetryNow,
    /// Accept the oldest pending request.
    AcceptOldest,
    /// Deny the oldest pending request.
    DenyOldest,
    /// Close chats, unregister, exit.
    Quit,
}

/// The interface's own state.
pub(crate) struct App {
    notices: RefCell<VecDeque<String>>,
    logs: BTreeMap<Nick, VecDeque<Entry>>,
    /// Chats being set up, and how far.
    pub(crate) dialing: BTreeMap<Nick, String>,
    pub(crate) input: Input,
    /// Lines scrolled back from the newest.
    pub(crate) scroll: usize,
    /// How far back the conversation last drawn can scroll (its lines above one screenful):
    /// PageUp stops there, so PageDown acts at once after scrolling past the top.
    pub(crate) scroll_limit: Cell<usize>,
    pub(crate) help: bool,
    /// Colours off (`NO_COLOR`).
    pub(crate) no_color: bool,
    /// Tor's state, for the status bar.
    pub(crate) tor: String,
    /// The time zone messages' times are shown in (the system's).
    pub(crate) tz: jiff::tz::TimeZone,
}

/// The commands tab completion knows.
const COMMANDS: &[&str] = &[
    "/accept",
    "/block",
    "/cancel",
    "/chats",
    "/close",
    "/connect",
    "/contacts",
    "/deny",
    "/fingerprint",
    "/help",
    "/history",
    "/msg",
    "/outbox",
    "/quit",
    "/retry",
    "/switch",
    "/trust",
    "/unblock",
    "/users",
    "/verify",
];

impl App {
    pub(crate) fn new(tor: String, no_color: bool) -> Self {
        Self {
            notices: RefCell::new(VecDeque::new()),
            logs: BTreeMap::new(),
            dialing: BTreeMap::new(),
            input: Input::default(),
            scroll: 0,
            scroll_limit: Cell::new(0),
            help: false,
            no_color,
            tor,
            tz: jiff::tz::TimeZone::system(),
        }
    }

    /// The newest notices, oldest first.
    pub(crate) fn notices(&self, n: usize) -> Vec<String> {
        let notices = self.notices.borrow();
        let skip = notices.len().saturating_sub(n);
        notices.iter().skip(skip).cloned().collect()
    }

    /// The conversation with `nick`, oldest first.
    pub(crate) fn log(&self, nick: &Nick) -> impl Iterator<Item = &Entry> {
        self.logs.get(nick).into_iter().flatten()
    }

    fn push(&mut self, nick: &Nick, entry: Entry) {
        let log = self.logs.entry(nick.clone()).or_default();
        log.push_back(entry);
        while log.len() > MAX_ENTRIES {
            log.pop_front();
        }
    }

    fn set_receipt(&mut self, nick: &Nick, id: u64, receipt: Receipt) {
        if let Some(e) = self.logs.get_mut(nick).and_then(|log| {
            log.iter_mut()
                .rev()
                .find(|e| e.id == id && e.receipt.is_some())
        }) {
            e.receipt = Some(receipt);
        }
    }

    /// Takes a conversation event into its log. Returns false for events that are not about
    /// one message (those are the line interface's notices).
    pub(crate) fn conversation_event(&mut self, event: &Event) -> bool {
        let now = p2pchat_async_std::local::wall_clock();
        match event {
            Event::Message { nick, id, text } => self.push(
                nick,
                Entry {
                    at: now,
                    receipt: None,
                    id: *id,
                    text: clean(text),
                },
            ),
            Event::Sent { nick, id } => self.set_receipt(nick, *id, Receipt::Sent),
            Event::Delivered { nick, id } => self.set_receipt(nick, *id, Receipt::Delivered),
            Event::Failed { nick, id, reason } => {
                self.set_receipt(nick, *id, Receipt::Failed(clean(reason)))
            }
            _ => return false,
        }
        true
    }

    /// What `key` does. `view` is for tab completion of nicks.
    pub(crate) fn key(&mut self, key: KeyEvent, view: &PeerView) -> Action {
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        let alt = key.modifiers.contains(KeyModifiers::ALT);
        if self.help {
            // Any key closes the help.
            self.help = false;
            return match key.code {
                KeyCode::Char('c') if ctrl => Action::Quit,
                _ => Action::None,
            };
        }
        match key.code {
            KeyCode::Char('c') if ctrl => return Action::Quit,
            KeyCode::Char('n') if ctrl => return Action::Cycle(1),
            KeyCode::Char('p') if ctrl => return Action::Cycle(-1),
            KeyCode::Down if alt => return Action::Cycle(1),
            KeyCode::Up if alt => return Action::Cycle(-1),
            KeyCode::Char('a') if ctrl => self.input.cursor = 0,
            KeyCode::Char('e') if ctrl => self.input.cursor = self.input.len(),
            KeyCode::Char('u') if ctrl => self.input.set(String::new()),
            KeyCode::Char('?') if self.input.text.is_empty() => self.help = true,
            KeyCode::Char(c) if !ctrl => self.insert(c.encode_utf8(&mut [0; 4])),
            KeyCode::Backspace => self.input.backspace(),
            KeyCode::Delete => self.input.delete(),
            KeyCode::Left => self.input.cursor = self.input.cursor.saturating_sub(1),
            KeyCode::Right => self.input.cursor = (self.input.cursor + 1).min(self.input.len()),
            KeyCode::Home => self.input.cursor = 0,
            KeyCode::End => self.input.cursor = self.input.len(),
            KeyCode::Up => self.input.older(),
            KeyCode::Down => self.input.newer(),
            KeyCode::PageUp => {
                self.scroll = self.scroll.saturating_add(10).min(self.scroll_limit.get());
            }
            KeyCode::PageDown => self.scroll = self.scroll.saturating_sub(10),
            KeyCode::Esc => self.input.set(String::new()),
            KeyCode::Tab => self.complete(view),
            KeyCode::F(2) => return Action::AcceptOldest,
            KeyCode::F(3) => return Action::DenyOldest,
            KeyCode::F(5) => return Action::RetryNow,
            KeyCode::Enter => {
                self.scroll = 0;
                return Action::Submit(self.input.take());
            }
            _ => {}
        }
        Action::None
    }

    /// Pasted text goes into the input line as text: its lines become one (nothing is sent
    /// before Enter) and other control characters are dropped.
    pub(crate) fn paste(&mut self, text: &str) {
        let text: String = text
            .replace(['\r', '\n', '\t'], " ")
            .chars()
            .filter(|c| !c.is_control())
            .collect();
        self.insert(&text);
    }

    fn insert(&mut self, text: &str) {
        if !self.input.insert(text) {
            self.say(&format!(
                "! the line is at its longest ({} bytes); the rest was not taken",
                MAX_INPUT_BYTES
            ));
        }
    }

    /// Completes the word before the cursor: a command at the start of the line, else a
    /// nick (contacts, chats, requests). Unique: completed with a space; several: their
    /// common prefix, and the choices as a notice.
    fn complete(&mut self, view: &PeerView) {
        let before = self.input.before_cursor().to_owned();
        let start = before.rfind(' ').map_or(0, |i| i + 1);
        let word = &before[start..];
        let choices: Vec<String> = if start == 0 && word.starts_with('/') {
            COMMANDS
                .iter()
                .filter(|c| c.starts_with(word))
                .map(|c| (*c).to_owned())
                .collect()
        } else {
            let mut nicks: Vec<String> = view
                .contacts
                .iter()
                .map(|c| c.nick.to_string())
                .chain(view.chats.iter().map(|c| c.nick.to_string()))
                .chain(view.requests.iter().map(|r| r.nick.to_string()))
                .filter(|n| n.starts_with(&word.to_ascii_lowercase()))
                .collect();
            nicks.sort();
            nicks.dedup();
            nicks
        };
        let Some(first) = choices.first() else {
            return;
        };
        let common = choices.iter().fold(first.clone(), |acc, c| {
            acc.chars()
                .zip(c.chars())
                .take_while(|(a, b)| a == b)
                .map(|(a, _)| a)
                .collect()
        });
        let mut completed = common.clone();
        if choices.len() == 1 {
            completed.push(' ');
        } else {
            self.say(&format!("* {}", choices.join("  ")));
        }
        let after = self.input.text[before.len()..].to_owned();
        let text = format!("{}{completed}{after}", &before[..start]);
        self.input.cursor = before[..start].chars().count() + completed.chars().count();
        self.input.text = text;
    }
}

impl Screen for App {
    fn say(&self, line: &str) {
        let mut notices = self.notices.borrow_mut();
        for part in line.lines() {
            notices.push_back(part.to_owned());
        }
        while notices.len() > MAX_NOTICES {
            notices.pop_front();
        }
    }

    fn dialing(&mut self, nick: &Nick, text: &str) {
        self.dialing.insert(nick.clone(), text.to_owned());
    }

    fn done(&mut self, nick: &Nick) {
        self.dialing.remove(nick);
    }

    /// Enough to scroll back through (PageUp); the store has the rest (`/history`).
    fn recent_count(&self) -> usize {
        MAX_ENTRIES / 2
    }

    fn recent(&mut self, nick: &Nick, entries: &[HistoryEntry], _me: &Nick) {
        // History is what the store has; what arrived since is already in the log.
        if self.logs.get(nick).is_some_and(|log| !log.is_empty()) {
            return;
        }
        for e in entries {
            let receipt = e.outgoing.then(|| match &e.outcome {
                None => Receipt::Queued,
                Some(Outcome::Delivered) => Receipt::Delivered,
                Some(Outcome::Failed(why)) => Receipt::Failed(clean(why)),
            });
            self.push(
                nick,
                Entry {
                    at: e.at,
                    receipt,
                    id: e.id,
                    text: clean(&e.text),
                },
            );
        }
    }

    fn queued(&mut self, nick: &Nick, id: u64, text: &str) {
        self.push(
            nick,
            Entry {
                at: p2pchat_async_std::local::wall_clock(),
                receipt: Some(Receipt::Queued),
                id,
                text: clean(text),
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crossterm::event::KeyEvent;

    fn view_with(nicks: &[&str]) -> PeerView {
        let mut view = crate::tui::test_views::empty_view();
        view.contacts = nicks
            .iter()
            .enumerate()
            .map(|(i, n)| crate::tui::test_views::contact(n, i + 1))
            .collect();
        view
    }

    fn type_text(app: &mut App, view: &PeerView, text: &str) {
        for c in text.chars() {
            app.key(KeyEvent::from(KeyCode::Char(c)), view);
        }
    }

    #[test]
    fn editing_wide_characters_moves_by_character_and_enter_submits_the_line() {
        let mut app = App::new(String::new(), false);
        let view = view_with(&[]);
        type_text(&mut app, &view, "你好👋");
        app.key(KeyEvent::from(KeyCode::Left), &view);
        app.key(KeyEvent::from(KeyCode::Backspace), &view);
        assert_eq!(app.input.text, "你👋");
        assert_eq!(app.input.before_cursor(), "你");
        app.key(KeyEvent::from(KeyCode::Home), &view);
        type_text(&mut app, &view, "a");
        assert_eq!(
            app.key(KeyEvent::from(KeyCode::Enter), &view),
            Action::Submit("a你👋".into())
        );
        assert_eq!(app.input.text, "");
        // Up brings it back.
        app.key(KeyEvent::from(KeyCode::Up), &view);
        assert_eq!(app.input.text, "a你👋");
        app.key(KeyEvent::from(KeyCode::Down), &view);
        assert_eq!(app.input.text, "");
    }

    #[test]
    fn tab_completes_commands_and_nicks() {
        let mut app = App::new(String::new(), false);
        let view = view_with(&["bob", "bobby", "carol"]);
        type_text(&mut app, &view, "/con");
        app.key(KeyEvent::from(KeyCode::Tab), &view);
        // /connect and /contacts share "/con": nothing more is certain.
        assert_eq!(app.input.text, "/con");
        assert!(app.notices(1)[0].contains("/connect  /contacts"));
        type_text(&mut app, &view, "n");
        app.key(KeyEvent::from(KeyCode::Tab), &view);
        assert_eq!(app.input.text, "/connect ");
        type_text(&mut app, &view, "c");
        app.key(KeyEvent::from(KeyCode::Tab), &view);
        assert_eq!(app.input.text, "/connect carol ");
        app.key(KeyEvent::from(KeyCode::Esc), &view);
        type_text(&mut app, &view, "/msg b");
        app.key(KeyEvent::from(KeyCode::Tab), &view);
        assert_eq!(app.input.text, "/msg bob");
    }

    #[test]
    fn ctrl_c_quits_and_question_mark_opens_help_only_on_an_empty_line() {
        let mut app = App::new(String::new(), false);
        let view = view_with(&[]);
        type_text(&mut app, &view, "why?");
        assert!(!app.help);
        app.key(KeyEvent::from(KeyCode::Esc), &view);
        type_text(&mut app, &view, "?");
        assert!(app.help);
        app.key(KeyEvent::from(KeyCode::Char('x')), &view);
        assert!(!app.help);
        let ctrl_c = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
        assert_eq!(app.key(ctrl_c, &view), Action::Quit);
    }

    #[test]
    fn a_paste_is_one_line_of_text_bounded_in_length_and_never_a_key() {
        let mut app = App::new(String::new(), false);
        let view = view_with(&[]);
        // A leading '?' pasted on an empty line is text, not the help key.
        app.paste("?one\ntwo\tthree\u{7}");
        assert!(!app.help);
        assert_eq!(app.input.text, "?one two three");
        assert_eq!(app.input.cursor, 14);
        // A paste far longer than a message is cut at the limit, on a character boundary,
        // and the user is told.
        app.paste(&"你".repeat(MAX_INPUT_BYTES));
        assert!(app.input.text.len() <= MAX_INPUT_BYTES);
        assert!(app.input.text.len() > MAX_INPUT_BYTES - 4);
        assert_eq!(app.input.cursor, app.input.len());
        assert!(app.notices(1)[0].contains("at its longest"));
        // Typing at the limit adds nothing.
        let before = app.input.text.clone();
        type_text(&mut app, &view, "x");
        assert_eq!(app.input.text, before);
    }

    #[test]
    fn a_conversation_keeps_at_most_its_cap_of_entries() {
        let mut app = App::new(String::new(), false);
        let bob = Nick::new("bob").unwrap();
        for id in 0..(MAX_ENTRIES as u64 + 10) {
            app.conversation_event(&Event::Message {
                nick: bob.clone(),
                id,
                text: "x".into(),
            });
        }
        assert_eq!(app.log(&bob).count(), MAX_ENTRIES);
        assert_eq!(app.log(&bob).next().map(|e| e.id), Some(10));
    }
}
