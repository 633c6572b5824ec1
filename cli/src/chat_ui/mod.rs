//! The line interface of `p2pchat chat`: commands in on stdin, events out on stdout. It
//! works in a terminal and through pipes (scripts, tests, bots). It only talks to the
//! runtime through `PeerHandle` — commands, a subscription to events, and the published
//! view — and keeps no copy of the core's state: pending requests are read from the view.

pub(crate) mod parse;
pub mod render;

use std::collections::BTreeMap;

use core::time::Duration;

use async_std::channel::{Sender, bounded};
use async_std::io::BufReadExt;
use indicatif::{MultiProgress, ProgressBar};
use p2pchat_async_std::store::{HistoryEntry, HistoryItem};
use p2pchat_async_std::{Answer, Command, PeerHandle, Subscription, Update};
use p2pchat_core::nick::Nick;
use p2pchat_core::peer::{ChatState, Event};

use parse::{HELP, UiCommand, parse};

/// Where an interface's output goes: the terminal's scrollback (the line interface) or the
/// full-screen interface's panes. The commands and what they say are the same for both.
pub(crate) trait Screen {
    /// A line for the user.
    fn say(&self, line: &str);

    /// A chat with `nick` is being set up (`text` says how far).
    fn dialing(&mut self, _nick: &Nick, _text: &str) {}

    /// The chat with `nick` is set up, or gone.
    fn done(&mut self, _nick: &Nick) {}

    /// How many of the last messages to show when a chat is opened or switched to.
    fn recent_count(&self) -> usize {
        10
    }

    /// The last messages with `nick`, when its chat is opened or switched to.
    fn recent(&mut self, nick: &Nick, entries: &[HistoryEntry], me: &Nick) {
        self.say(&format!(
            "* the last {} messages with {nick}:",
            entries.len()
        ));
        for e in entries {
            self.say(&render::history_line(e, me));
        }
    }

    /// Our message `id` to `nick` was accepted (stored, waiting to be delivered).
    fn queued(&mut self, nick: &Nick, id: u64, _text: &str) {
        self.say(&format!("* #{id} to {nick} queued"));
    }
}

enum UiInput {
    Line(String),
    Eof,
    Update(Update),
    Stopped,
}

/// Runs the interface until the user quits (or stdin ends) and the peer has shut down.
/// `earlier` are events taken from `updates` before (while waiting to register): they are
/// shown first. An error says the store failed and the peer stopped.
pub async fn run(
    peer: PeerHandle,
    updates: Subscription,
    earlier: Vec<Event>,
    me: Nick,
) -> Result<(), p2pchat_async_std::store::StoreError> {
    let (tx, rx) = bounded::<UiInput>(256);
    async_std::task::spawn(read_stdin(tx.clone()));
    forward_updates(updates, tx.clone(), UiInput::Update, UiInput::Stopped);
    let quit = tx.clone();
    // Ctrl-C and SIGTERM quit gracefully, like /quit. A second handler cannot be set
    // (tests run several interfaces in one process); then signals keep their default.
    let _ = ctrlc::set_handler(move || {
        let _ = quit.try_send(UiInput::Line("/quit".into()));
    });
    let mut ui = Ui::new(Spinners::new(), peer, me);
    // First what an earlier run stored but never showed (from the store), then what came
    // while this one started.
    let mut arrived: BTreeMap<Nick, usize> = BTreeMap::new();
    for event in &earlier {
        if let Event::Message { nick, .. } = event {
            *arrived.entry(nick.clone()).or_default() += 1;
        }
    }
    ui.show_unread(&arrived).await;
    for event in &earlier {
        ui.event(event);
    }
    for nick in arrived.into_keys() {
        ui.run(Command::MarkRead(nick)).await;
    }
    println!("* type /help for commands");
    while let Ok(input) = rx.recv().await {
        match input {
            UiInput::Line(line) => ui.line(&line).await,
            UiInput::Eof => ui.quit().await,
            UiInput::Update(Update::Event(event)) => {
                let done = event == Event::ShutdownComplete;
                ui.event(&event);
                // Printed is read: a line interface shows every message as it comes.
                if let Event::Message { nick, .. } = &event {
                    ui.run(Command::MarkRead(nick.clone())).await;
                }
                if done {
                    break;
                }
            }
            UiInput::Update(Update::Lagged) => ui.lagged(),
            UiInput::Update(Update::StorePaused(why)) => ui.store_paused(&why),
            UiInput::Update(Update::StoreResumed) => ui.store_resumed(),
            UiInput::Stopped => break,
        }
    }
    ui.peer.join().await
}

/// Hands every update to an interface's input channel as `wrap(update)`, then `stopped`
/// once the peer has stopped (or until the interface is gone).
pub(crate) fn forward_updates<T: Send + 'static>(
    updates: Subscription,
    to: Sender<T>,
    wrap: fn(Update) -> T,
    stopped: T,
) {
    async_std::task::spawn(async move {
        while let Some(update) = updates.next().await {
            if to.send(wrap(update)).await.is_err() {
                return;
            }
        }
        let _ = to.send(stopped).await;
    });
}

async fn read_stdin(tx: Sender<UiInput>) {
    let stdin = async_std::io::stdin();
    let mut reader = async_std::io::BufReader::new(stdin);
    loop {
        let mut line = String::new();
        match reader.read_line(&mut line).await {
            Ok(0) | Err(_) => {
                let _ = tx.send(UiInput::Eof).await;
                return;
            }
            Ok(_) => {
                if tx.send(UiInput::Line(line)).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// The commands of both interfaces, on a `Screen`.
pub(crate) struct Ui<S: Screen> {
    pub(crate) screen: S,
    pub(crate) peer: PeerHandle,
    pub(crate) me: Nick,
    /// The chat plain text goes to.
    pub(crate) current: Option<Nick>,
    pub(crate) quitting: bool,
}

/// Spinners on stderr while chats dial (only on a terminal); output lines are printed
/// around them.
struct Spinners {
    multi: Option<MultiProgress>,
    bars: BTreeMap<Nick, ProgressBar>,
}

impl Screen for Spinners {
    fn say(&self, line: &str) {
        Spinners::say(self, line);
    }

    fn dialing(&mut self, nick: &Nick, text: &str) {
        Spinners::dialing(self, nick, text);
    }

    fn done(&mut self, nick: &Nick) {
        Spinners::done(self, nick);
    }
}

impl Spinners {
    fn new() -> Self {
        use std::io::IsTerminal;
        Self {
            multi: std::io::stderr().is_terminal().then(MultiProgress::new),
            bars: BTreeMap::new(),
        }
    }

    fn say(&self, line: &str) {
        match &self.multi {
            Some(m) => m.suspend(|| println!("{line}")),
            None => println!("{line}"),
        }
    }

    fn dialing(&mut self, nick: &Nick, text: &str) {
        let Some(multi) = &self.multi else { return };
        let bar = self.bars.entry(nick.clone()).or_insert_with(|| {
            let bar = multi.add(ProgressBar::new_spinner());
            bar.enable_steady_tick(Duration::from_millis(100));
            bar
        });
        bar.set_message(text.to_owned());
    }

    fn done(&mut self, nick: &Nick) {
        if let Some(bar) = self.bars.remove(nick) {
            bar.finish_and_clear();
        }
    }
}

impl Drop for Spinners {
    /// Quitting while chats still dial leaves no spinner line behind.
    fn drop(&mut self) {
        for (_, bar) in std::mem::take(&mut self.bars) {
            bar.finish_and_clear();
        }
        if let Some(multi) = &self.multi {
            let _ = multi.clear();
        }
    }
}

impl<S: Screen> Ui<S> {
    pub(crate) fn new(screen: S, peer: PeerHandle, me: Nick) -> Self {
        Self {
            screen,
            peer,
            me,
            current: None,
            quitting: false,
        }
    }

    fn say(&self, line: &str) {
        self.screen.say(line);
    }

    /// The store refused a write: the peer is paused until it takes writes again.
    pub(crate) fn store_paused(&mut self, why: &str) {
        self.say(&format!("! {}", render::clean(why)));
        self.say(
            "! p2pchat is paused: nothing is sent, received or accepted until it can store again (it tries every 5 s). Free some space; what was stored is kept",
        );
    }

    /// The store takes writes again.
    pub(crate) fn store_resumed(&mut self) {
        self.say(
            "* storing works again: p2pchat carries on from what it stored (queued messages are sent; /connect to reopen a chat)",
        );
    }

    /// Events were dropped for us: say so, and where things stand now (from the view).
    pub(crate) fn lagged(&mut self) {
        let view = self.peer.view();
        self.say("! some events were not shown (the screen fell behind); where things stand:");
        for chat in &view.chats {
            self.say(&format!("  {}: {:?}", chat.nick, chat.state));
        }
        for r in &view.requests {
            self.say(&format!(
                "* {0} wants to chat (key {1}): /accept {0} or /deny {0} [reason]",
                r.nick, r.fingerprint
            ));
        }
        if view.queued > 0 {
            self.say(&format!("  {} messages wait: /outbox", view.queued));
        }
    }

    /// The id of `nick`'s pending request, from the view the core publishes.
    fn request_of(&self, nick: &Nick) -> Option<u64> {
        let view = self.peer.view();
        view.requests
            .iter()
            .find(|r| r.nick == *nick)
            .map(|r| r.request)
    }

    /// Whether `nick` is a contact (messages to them wait while they are away).
    fn is_contact(&self, nick: &Nick) -> bool {
        self.peer.view().contacts.iter().any(|c| c.nick == *nick)
    }

    pub(crate) fn event(&mut self, event: &Event) {
        match event {
            Event::ChatState {
                nick,
                state: ChatState::Connected,
            } if self.current.is_none() => {
                self.current = Some(nick.clone());
            }
            // A contact's conversation stays current when the chat closes: what the user
            // types next waits in the outbox until they are back. Anyone else's ends.
            Event::ChatClosed { nick, .. }
                if self.current.as_ref() == Some(nick) && !self.is_contact(nick) =>
            {
                self.current = None;
            }
            _ => {}
        }
        match event {
            Event::ChatState { nick, state } => match state {
                ChatState::LookingUp | ChatState::Connecting | ChatState::AwaitingAcceptance => {
                    let line = render::render(event).join(" ");
                    self.screen.dialing(nick, line.trim_start_matches("* "));
                }
                _ => self.screen.done(nick),
            },
            Event::ChatClosed { nick, .. } => self.screen.done(nick),
            _ => {}
        }
        for line in render::render(event) {
            self.say(&line);
        }
    }

    pub(crate) async fn line(&mut self, line: &str) {
        match parse(line) {
            Ok(command) => self.command(command).await,
            Err(why) => self.say(&format!("! {why}")),
        }
    }

    pub(crate) async fn quit(&mut self) {
        if !self.quitting {
            self.quitting = true;
            self.say("* closing chats and unregistering…");
            self.run(Command::Shutdown).await;
        }
    }

    fn nick(&self, s: &str) -> Option<Nick> {
        match Nick::new(s) {
            Ok(n) => Some(n),
            Err(e) => {
                self.say(&format!("! {s:?} is not a nick: {e}"));
                None
            }
        }
    }

    /// Runs a runtime command; prints its error, if any. Returns the answer.
    pub(crate) async fn run(&self, command: Command) -> Option<Answer> {
        match self.peer.command(command).await {
            Ok(Ok(Answer::StoreError(e))) => {
                self.say(&format!("! {}", render::clean(&e)));
                None
            }
            Ok(Ok(answer)) => Some(answer),
            Ok(Err(e)) => {
                self.say(&format!("! {e}"));
                None
            }
            Err(e) => {
                self.say(&format!("! {e}"));
                None
            }
        }
    }

    async fn send(&mut self, nick: Nick, text: String) {
        if let Some(Answer::MessageId(id)) =
            self.run(Command::Send(nick.clone(), text.clone())).await
        {
            self.screen.queued(&nick, id, &text);
        }
    }

    async fn command(&mut self, command: UiCommand) {
        if self.quitting && command != UiCommand::Nothing {
            self.say("! quitting; please wait");
            return;
        }
        match command {
            UiCommand::Nothing => {}
            UiCommand::Help => self.say(HELP),
            UiCommand::Quit => self.quit().await,
            UiCommand::Users(prefix) => {
                self.run(Command::Users {
                    prefix,
                    after: None,
                })
                .await;
            }
            UiCommand::Connect(nick) => {
                if let Some(nick) = self.nick(&nick)
                    && self.run(Command::Connect(nick.clone())).await.is_some()
                {
                    self.show_recent(&nick).await;
                    self.current = Some(nick);
                }
            }
            UiCommand::Accept(nick) => {
                let Some(nick) = self.nick(&nick) else { return };
                match self.request_of(&nick) {
                    Some(request) => {
                        if self.run(Command::Accept(request)).await.is_some() {
                            self.current = Some(nick);
                        }
                    }
                    None => self.say(&format!("! {nick} has not asked to chat (or gave up)")),
                }
            }
            UiCommand::Deny(nick, reason) => {
                let Some(nick) = self.nick(&nick) else { return };
                match self.request_of(&nick) {
                    Some(request) => {
                        let reason = if reason.is_empty() {
                            "denied".to_owned()
                        } else {
                            reason
                        };
                        if self.run(Command::Deny(request, reason)).await.is_some() {
                            self.say(&format!("* denied {nick}"));
                        }
                    }
                    None => self.say(&format!("! {nick} has not asked to chat (or gave up)")),
                }
            }
            UiCommand::Chats => {
                if let Some(Answer::Chats(chats)) = self.run(Command::Chats).await {
                    if chats.is_empty() {
                        self.say("* no chats; /connect NICK to open one");
                    }
                    for (nick, state) in chats {
                        let mark = if self.current.as_ref() == Some(&nick) {
                            ">"
                        } else {
                            " "
                        };
                        self.say(&format!("{mark} {nick}: {state:?}"));
                    }
                }
            }
            UiCommand::Switch(nick) => {
                if let Some(nick) = self.nick(&nick) {
                    self.say(&format!("* talking to {nick}"));
                    self.show_recent(&nick).await;
                    self.current = Some(nick);
                }
            }
            UiCommand::Msg(nick, text) => {
                if let Some(nick) = self.nick(&nick) {
                    self.send(nick, text).await;
                }
            }
            UiCommand::Text(text) => match self.current.clone() {
                Some(nick) => self.send(nick, text).await,
                None => self.say(
                    "! no current chat: /msg NICK TEXT, /connect NICK, /accept NICK or /switch NICK",
                ),
            },
            UiCommand::Contacts => self.contacts().await,
            UiCommand::Outbox => self.outbox().await,
            UiCommand::History(nick, n) => {
                let Some(nick) = self.nick(&nick) else { return };
                match self.run(Command::History(nick.clone(), n)).await {
                    Some(Answer::History(entries)) if entries.is_empty() => {
                        self.say(&format!("* no history with {nick}"));
                    }
                    Some(Answer::History(items)) => {
                        for item in &items {
                            self.say(&render::history_item_line(item, &nick, &self.me));
                        }
                    }
                    _ => {}
                }
            }
            UiCommand::Verify(nick, fingerprint) => {
                let Some(nick) = self.nick(&nick) else { return };
                match fingerprint.parse() {
                    Ok(f) => {
                        if self.run(Command::Verify(nick.clone(), f)).await.is_some() {
                            self.say(&format!("* {nick}'s key is verified"));
                        }
                    }
                    Err(e) => self.say(&format!("! {e}")),
                }
            }
            UiCommand::Trust(nick, fingerprint) => {
                let Some(nick) = self.nick(&nick) else { return };
                match fingerprint.parse() {
                    Ok(f) => {
                        if self.run(Command::Trust(nick.clone(), f)).await.is_some() {
                            self.say(&format!(
                                "* {nick}'s key is now {f}, not compared; /verify {nick} {f} once you compared it"
                            ));
                        }
                    }
                    Err(e) => self.say(&format!("! {e}")),
                }
            }
            UiCommand::Block(nick) => {
                let Some(nick) = self.nick(&nick) else { return };
                if self.run(Command::Block(nick.clone())).await.is_some() {
                    self.say(&format!("* {nick} is blocked; /unblock {nick} to undo"));
                }
            }
            UiCommand::Unblock(nick) => {
                let Some(nick) = self.nick(&nick) else { return };
                if self.run(Command::Unblock(nick.clone())).await.is_some() {
                    self.say(&format!("* {nick} is no longer blocked"));
                }
            }
            UiCommand::Cancel(nick, id) => self.cancel(nick, id).await,
            UiCommand::Close(nick) => {
                if let Some(nick) = self.nick(&nick) {
                    self.run(Command::Close(nick, "closed by the user".into()))
                        .await;
                }
            }
            UiCommand::Retry(nick) => {
                if let Some(nick) = self.nick(&nick) {
                    self.run(Command::Retry(nick)).await;
                }
            }
            UiCommand::Fingerprint(None) => {
                if let Some(Answer::Fingerprint(Some(f))) =
                    self.run(Command::Fingerprint(None)).await
                {
                    self.say(&format!("* you ({}): {f}", self.me));
                }
            }
            UiCommand::Fingerprint(Some(nick)) => {
                let Some(nick) = self.nick(&nick) else { return };
                match self.run(Command::Fingerprint(Some(nick.clone()))).await {
                    Some(Answer::Fingerprint(Some(f))) => self.say(&format!("* {nick}: {f}")),
                    Some(_) => self.say(&format!(
                        "! {nick}'s key is not known yet: it is pinned when you first chat"
                    )),
                    None => {}
                }
            }
        }
    }

    /// The last few messages with `nick`, when opening or switching to its chat.
    /// Shows, from the store, each contact's messages not read yet — those that arrived
    /// while no interface showed them (the process ended between storing and showing, or
    /// they waited unread in a conversation not on screen) — and marks them read. The
    /// newest `arrived[nick]` of them came during this start and are shown as events.
    pub(crate) async fn show_unread(&mut self, arrived: &BTreeMap<Nick, usize>) {
        let Some(Answer::Contacts(contacts)) = self.run(Command::Contacts).await else {
            return;
        };
        for c in contacts {
            let now = arrived.get(&c.nick).copied().unwrap_or(0);
            let unseen = c.unread.saturating_sub(now);
            if unseen == 0 {
                continue;
            }
            // Enough rows to find them among ours.
            let rows = c.unread.saturating_mul(2).saturating_add(50);
            let Some(Answer::History(items)) =
                self.run(Command::History(c.nick.clone(), rows)).await
            else {
                continue;
            };
            let theirs: Vec<&HistoryEntry> = items
                .iter()
                .filter_map(HistoryItem::entry)
                .filter(|e| !e.outgoing)
                .collect();
            let end = theirs.len().saturating_sub(now);
            let new = &theirs[end.saturating_sub(unseen)..end];
            self.say(&match (unseen, new.len()) {
                (n, 0) => format!(
                    "* {n} message(s) from {} arrived that you have not seen; history is off, so they were not kept",
                    c.nick
                ),
                (_, 1) => format!("* 1 new message from {} you have not seen:", c.nick),
                (_, n) => format!("* {n} new messages from {} you have not seen:", c.nick),
            });
            for e in new {
                self.say(&render::history_line(e, &self.me));
            }
            self.run(Command::MarkRead(c.nick.clone())).await;
        }
    }

    pub(crate) async fn show_recent(&mut self, nick: &Nick) {
        let count = self.screen.recent_count();
        if let Some(Answer::History(items)) = self.run(Command::History(nick.clone(), count)).await
            && !items.is_empty()
        {
            let entries: Vec<HistoryEntry> =
                items.iter().filter_map(|i| i.entry().cloned()).collect();
            let damaged = items.len() - entries.len();
            if damaged > 0 {
                self.say(&format!(
                    "! {damaged} of the last messages with {nick} cannot be read: the store is damaged there (/history {nick} marks them)"
                ));
            }
            self.screen.recent(nick, &entries, &self.me);
        }
    }

    async fn contacts(&mut self) {
        let Some(Answer::Contacts(contacts)) = self.run(Command::Contacts).await else {
            return;
        };
        if contacts.is_empty() {
            self.say("* no contacts yet: they are added when you first chat");
        }
        for c in contacts {
            self.say(&render::contact_line(&c));
        }
    }

    async fn outbox(&mut self) {
        let Some(Answer::Outbox(waiting)) = self.run(Command::Outbox).await else {
            return;
        };
        if waiting.is_empty() {
            self.say("* nothing is waiting to be delivered");
        }
        for (m, next) in waiting {
            self.say(&render::outbox_line(&m, next));
        }
    }

    async fn cancel(&mut self, nick: Option<String>, id: u64) {
        let nick = match nick {
            Some(n) => match self.nick(&n) {
                Some(n) => n,
                None => return,
            },
            None => {
                let Some(Answer::Outbox(waiting)) = self.run(Command::Outbox).await else {
                    return;
                };
                let mut matching: Vec<Nick> = waiting
                    .into_iter()
                    .filter(|(m, _)| m.id == id)
                    .map(|(m, _)| m.to)
                    .collect();
                matching.dedup();
                match matching.len() {
                    0 => return self.say(&format!("! no waiting message #{id}")),
                    1 => matching.remove(0),
                    _ => {
                        return self.say(&format!(
                            "! #{id} is waiting for several contacts; say which: /cancel NICK {id}"
                        ));
                    }
                }
            }
        };
        if self.run(Command::Cancel(nick.clone(), id)).await.is_some() {
            self.say(&format!("* #{id} to {nick} withdrawn"));
        }
    }
}
