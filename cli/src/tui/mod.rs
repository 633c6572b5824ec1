//! The full-screen interface of `p2pchat chat` (ratatui on crossterm, on the alternate
//! screen), used when stdin and stdout are terminals and `--plain` is not given.
//!
//! It takes the terminal once the store is open ([`Boot::start`]), shows Tor's bootstrap
//! and the registration in its status bar, then ([`Boot::run`]) runs the same commands as
//! the line interface (`chat_ui::Ui` on this `App` as its `Screen`), draws the view the
//! runtime publishes, and keeps only what is its own: the conversations on screen, the
//! input line, scrolling. The terminal is restored on every way out: `/quit`, Ctrl-C,
//! SIGTERM, an error (dropping `Boot`), or a panic (ratatui's hook).

mod app;
mod draw;
#[cfg(test)]
mod test_views;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant as WallInstant;

use async_std::channel::{Receiver, Sender, bounded};
use core::time::Duration;
use crossterm::event::{Event as TermEvent, KeyEventKind};
use p2pchat_async_std::store::StoreError;
use p2pchat_async_std::{Command, PeerHandle, Subscription, Update};
use p2pchat_core::nick::Nick;
use p2pchat_core::peer::{Event, PeerView};

use crate::chat_ui::Ui;
use app::{Action, App};

enum TuiInput {
    Key(crossterm::event::KeyEvent),
    Paste(String),
    Redraw,
    Update(Update),
    /// How Tor stands now, for the status bar.
    Tor(String),
    Quit,
    Stopped,
}

/// Whether the interface is still starting: Ctrl-C then stops the program at once (there
/// is nothing to shut down yet).
static STARTING: AtomicBool = AtomicBool::new(false);

/// The start-up screen: who we are, and how far Tor and the registration are.
struct StartScreen {
    terminal: ratatui::DefaultTerminal,
    nick: Nick,
}

impl StartScreen {
    fn show(&mut self, step: &str) {
        use ratatui::widgets::{Block, Borders, Paragraph};
        let nick = self.nick.to_string();
        let step = crate::chat_ui::render::clean(step);
        // Cleared each time: a warning printed on stderr meanwhile must not linger.
        wipe(&mut self.terminal);
        let _ = self.terminal.draw(|f| {
            let [bar, body] = ratatui::layout::Layout::vertical([
                ratatui::layout::Constraint::Length(1),
                ratatui::layout::Constraint::Min(1),
            ])
            .areas(f.area());
            let status = format!(" {nick} │ starting │ {step}");
            f.render_widget(
                Paragraph::new(status).style(
                    ratatui::style::Style::default()
                        .add_modifier(ratatui::style::Modifier::REVERSED),
                ),
                bar,
            );
            let text = format!("{step}\n\nCtrl-C stops.");
            let block = Block::default().borders(Borders::ALL).title(" p2pchat ");
            f.render_widget(Paragraph::new(text).block(block), body);
        });
    }
}

/// The full-screen interface from start-up on.
pub struct Boot {
    screen: Arc<Mutex<Option<StartScreen>>>,
    tx: Sender<TuiInput>,
    rx: Receiver<TuiInput>,
}

impl Boot {
    /// Takes the terminal (raw mode, alternate screen) and shows the start-up screen.
    pub fn start(nick: &Nick) -> Self {
        STARTING.store(true, Ordering::SeqCst);
        let terminal = take_terminal();
        let mut screen = StartScreen {
            terminal,
            nick: nick.clone(),
        };
        screen.show("starting…");
        // Nothing reads the terminal while starting (no thread competes with drawing for
        // it), and it is not in raw mode, so Ctrl-C is SIGINT, handled below.
        let _ = crossterm::terminal::disable_raw_mode();
        let (tx, rx) = bounded::<TuiInput>(256);
        // SIGTERM and SIGINT (Ctrl-C while starting; later, in raw mode, Ctrl-C is a key): while starting,
        // stop at once with the terminal restored; then, quit gracefully like /quit.
        let quit = tx.clone();
        let _ = ctrlc::set_handler(move || {
            if STARTING.load(Ordering::SeqCst) {
                stop_while_starting();
            }
            let _ = quit.try_send(TuiInput::Quit);
        });
        Self {
            screen: Arc::new(Mutex::new(Some(screen))),
            tx,
            rx,
        }
    }

    /// Where later news of Tor goes (the status bar), from any task.
    pub fn tor_reporter(&self) -> impl Fn(String) + Send + Sync + 'static {
        let tx = self.tx.clone();
        move |state| {
            let _ = tx.try_send(TuiInput::Tor(state));
        }
    }

    /// Where start-up progress goes: the status bar.
    pub fn progress(&self) -> crate::tor_setup::Progress {
        let screen = Arc::clone(&self.screen);
        crate::tor_setup::Progress::to(move |step| {
            if let Some(s) = screen
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .as_mut()
            {
                s.show(step);
            }
        })
    }

    /// Runs the interface until the user quits and the peer has shut down. `earlier` are
    /// events taken before it started, `notices` what start-up had to say; `tor` says how
    /// Tor stands, for the status bar.
    pub async fn run(
        self,
        peer: PeerHandle,
        updates: Subscription,
        earlier: Vec<Event>,
        notices: Vec<String>,
        tor: String,
    ) -> Result<(), StoreError> {
        let screen = self
            .screen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let Some(StartScreen { terminal, nick }) = screen else {
            debug_assert!(false, "the start-up screen is taken once");
            let _ = peer.command(Command::Shutdown).await;
            return peer.join().await;
        };
        STARTING.store(false, Ordering::SeqCst);
        let _ = crossterm::terminal::enable_raw_mode();
        spawn_terminal_reader(self.tx.clone());
        run(
            terminal,
            (self.tx.clone(), self.rx.clone()),
            peer,
            updates,
            earlier,
            notices,
            nick,
            tor,
        )
        .await
    }
}

impl Drop for Boot {
    /// An error during start-up (or after) leaves the terminal as it found it, so the
    /// message that follows is readable.
    fn drop(&mut self) {
        give_terminal_back();
    }
}

#[allow(clippy::too_many_arguments)]
async fn run(
    mut terminal: ratatui::DefaultTerminal,
    (tx, rx): (Sender<TuiInput>, Receiver<TuiInput>),
    peer: PeerHandle,
    updates: Subscription,
    earlier: Vec<Event>,
    notices: Vec<String>,
    me: Nick,
    tor: String,
) -> Result<(), StoreError> {
    crate::chat_ui::forward_updates(updates, tx.clone(), TuiInput::Update, TuiInput::Stopped);
    // Countdowns ("retrying in N s") move once a second.
    let tick = tx.clone();
    async_std::task::spawn(async move {
        loop {
            async_std::task::sleep(Duration::from_secs(1)).await;
            if tick.send(TuiInput::Redraw).await.is_err() {
                return;
            }
        }
    });
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    let mut ui = Ui::new(App::new(tor, no_color), peer, me);
    for notice in &notices {
        ui.screen_say(notice);
    }
    for event in &earlier {
        take_event(&mut ui, event).await;
    }
    wipe(&mut terminal);
    let mut seen = Seen::default();
    loop {
        let view = ui.peer.view();
        let age = seen.age(&view);
        if let Err(e) =
            terminal.draw(|f| draw::draw(f, &ui.screen, &view, ui.current.as_ref(), age))
        {
            ui.screen_say(&format!("! cannot draw: {e}"));
        }
        let Ok(input) = rx.recv().await else { break };
        match input {
            TuiInput::Key(key) => {
                let action = ui.screen.key(key, &view);
                act(&mut ui, action, &view).await;
            }
            TuiInput::Paste(text) => ui.screen.paste(&text),
            TuiInput::Redraw => {}
            TuiInput::Tor(state) => ui.screen.tor = crate::chat_ui::render::clean(&state),
            TuiInput::Update(Update::Event(event)) => {
                let done = event == Event::ShutdownComplete;
                take_event(&mut ui, &event).await;
                if done {
                    break;
                }
            }
            TuiInput::Update(Update::Lagged) => ui.lagged(),
            TuiInput::Update(Update::StorePaused(why)) => ui.store_paused(&why),
            TuiInput::Update(Update::StoreResumed) => ui.store_resumed(),
            TuiInput::Quit => ui.quit().await,
            TuiInput::Stopped => break,
        }
    }
    give_terminal_back();
    ui.peer.join().await
}

/// When each view was first drawn, to count down from it.
#[derive(Default)]
struct Seen {
    /// Held, so that a newer view cannot take its address and pass for it.
    view: Option<(Arc<PeerView>, WallInstant)>,
}

impl Seen {
    fn age(&mut self, view: &Arc<PeerView>) -> Duration {
        match &self.view {
            Some((seen, at)) if Arc::ptr_eq(seen, view) => at.elapsed(),
            _ => {
                self.view = Some((Arc::clone(view), WallInstant::now()));
                Duration::ZERO
            }
        }
    }
}

/// An event: into its conversation, or a notice like the line interface's.
async fn take_event(ui: &mut Ui<App>, event: &Event) {
    let before = ui.current.clone();
    if !ui.screen.conversation_event(event) {
        ui.event(event);
    }
    // A chat that connected became the current conversation.
    if ui.current != before {
        opened(ui).await;
    }
    // A message in the conversation on screen is read as it arrives.
    if let (Event::Message { nick, .. }, Some(current)) = (event, &ui.current)
        && nick == current
    {
        ui.run(Command::MarkRead(nick.clone())).await;
    }
}

async fn act(ui: &mut Ui<App>, action: Action, view: &PeerView) {
    match action {
        Action::None => {}
        Action::Quit => ui.quit().await,
        Action::Submit(line) => {
            let before = ui.current.clone();
            ui.line(&line).await;
            if ui.current != before {
                opened(ui).await;
            }
        }
        Action::Cycle(step) => {
            let all = draw::conversations(view);
            if all.is_empty() {
                return;
            }
            let at = ui
                .current
                .as_ref()
                .and_then(|c| all.iter().position(|n| n == c));
            let len = all.len() as i64;
            let next = match at {
                Some(i) => (i as i64 + i64::from(step)).rem_euclid(len),
                None => 0,
            };
            ui.current = usize::try_from(next).ok().and_then(|i| all.get(i)).cloned();
            opened(ui).await;
        }
        Action::RetryNow => match ui.current.clone() {
            Some(nick) => {
                ui.run(Command::Retry(nick)).await;
            }
            None => ui.screen_say("! no conversation open: Ctrl-N chooses one"),
        },
        Action::AcceptOldest | Action::DenyOldest => {
            let Some(request) = view.requests.first() else {
                return ui.screen_say("! nobody is asking to chat");
            };
            let line = if action == Action::AcceptOldest {
                format!("/accept {}", request.nick)
            } else {
                format!("/deny {}", request.nick)
            };
            ui.line(&line).await;
            if action == Action::AcceptOldest {
                opened(ui).await;
            }
        }
    }
}

/// A conversation came on screen: its history is loaded and its messages are read.
async fn opened(ui: &mut Ui<App>) {
    ui.screen.scroll = 0;
    if let Some(nick) = ui.current.clone() {
        ui.show_recent(&nick).await;
        ui.run(Command::MarkRead(nick)).await;
    }
}

impl Ui<App> {
    fn screen_say(&self, line: &str) {
        use crate::chat_ui::Screen;
        self.screen.say(line);
    }
}

/// Raw mode, the alternate screen (ratatui also installs a panic hook that leaves both),
/// and bracketed paste, so a pasted newline is text, not Enter.
fn take_terminal() -> ratatui::DefaultTerminal {
    let terminal = ratatui::init();
    let _ = crossterm::execute!(std::io::stdout(), crossterm::event::EnableBracketedPaste);
    terminal
}

/// Clears the screen and makes the next draw repaint all of it.
///
/// Not `Terminal::clear`: that asks the terminal where its cursor is and waits for the
/// answer on crossterm's event reader, which the input thread holds while it waits for a
/// key — so the interface would hang until the user pressed one. A resize to the same
/// size clears the full-screen viewport the same way without asking.
fn wipe(terminal: &mut ratatui::DefaultTerminal) {
    if let Ok(size) = terminal.size() {
        let _ = terminal.resize(size.into());
    }
}

/// Undoes [`take_terminal`].
fn give_terminal_back() {
    let _ = crossterm::execute!(std::io::stdout(), crossterm::event::DisableBracketedPaste);
    ratatui::restore();
}

/// Ctrl-C or a signal while starting: nothing runs yet that needs shutting down (a tor we
/// launched exits with us), so the program stops, with the terminal restored.
fn stop_while_starting() -> ! {
    give_terminal_back();
    eprintln!("p2pchat: stopped while starting");
    std::process::exit(130);
}

/// Reads the terminal on a thread of its own (crossterm's `read` blocks).
fn spawn_terminal_reader(tx: Sender<TuiInput>) {
    std::thread::spawn(move || {
        loop {
            let input = match crossterm::event::read() {
                Ok(TermEvent::Key(k)) if k.kind != KeyEventKind::Release => TuiInput::Key(k),
                Ok(TermEvent::Paste(text)) => TuiInput::Paste(text),
                Ok(TermEvent::Resize(..)) => TuiInput::Redraw,
                Ok(_) => continue,
                Err(_) => TuiInput::Quit,
            };
            let quit = matches!(input, TuiInput::Quit);
            if tx.send_blocking(input).is_err() || quit {
                return;
            }
        }
    });
}
