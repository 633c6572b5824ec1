//! The line interface of `p2pchat chat`: commands in on stdin, events out on stdout. It
//! works in a terminal and through pipes (scripts, tests, bots). It only talks to the
//! runtime through `PeerHandle`, so a full-screen interface can replace it.

mod parse;
pub mod render;

use std::collections::BTreeMap;

use async_std::channel::{Sender, bounded};
use async_std::io::BufReadExt;
use p2pchat_async_std::{Answer, Command, PeerHandle};
use p2pchat_core::nick::Nick;
use p2pchat_core::peer::{ChatState, Event};

use parse::{HELP, UiCommand, parse};

enum UiInput {
    Line(String),
    Eof,
    Event(Event),
    Stopped,
}

/// Runs the interface until the user quits (or stdin ends) and the peer has shut down.
pub async fn run(peer: PeerHandle, me: Nick) {
    let (tx, rx) = bounded::<UiInput>(256);
    async_std::task::spawn(read_stdin(tx.clone()));
    let events = peer.events();
    let forward = tx.clone();
    async_std::task::spawn(async move {
        while let Ok(event) = events.recv().await {
            if forward.send(UiInput::Event(event)).await.is_err() {
                return;
            }
        }
        let _ = forward.send(UiInput::Stopped).await;
    });
    let quit = tx.clone();
    // Ctrl-C and SIGTERM quit gracefully, like /quit. A second handler cannot be set
    // (tests run several interfaces in one process); then signals keep their default.
    let _ = ctrlc::set_handler(move || {
        let _ = quit.try_send(UiInput::Line("/quit".into()));
    });
    let mut ui = Ui {
        peer,
        me,
        current: None,
        requests: BTreeMap::new(),
        quitting: false,
    };
    println!("* type /help for commands");
    while let Ok(input) = rx.recv().await {
        match input {
            UiInput::Line(line) => ui.line(&line).await,
            UiInput::Eof => ui.quit().await,
            UiInput::Event(event) => {
                let done = event == Event::ShutdownComplete;
                ui.event(&event);
                if done {
                    break;
                }
            }
            UiInput::Stopped => break,
        }
    }
    ui.peer.join().await;
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

struct Ui {
    peer: PeerHandle,
    me: Nick,
    current: Option<Nick>,
    /// Pending chat requests by nick.
    requests: BTreeMap<Nick, u64>,
    quitting: bool,
}

impl Ui {
    fn event(&mut self, event: &Event) {
        match event {
            Event::ConnectionRequest { request, nick, .. } => {
                self.requests.insert(nick.clone(), *request);
            }
            Event::ChatState {
                nick,
                state: ChatState::Connected,
            } => {
                self.requests.remove(nick);
                if self.current.is_none() {
                    self.current = Some(nick.clone());
                }
            }
            Event::ChatClosed { nick, .. } if self.current.as_ref() == Some(nick) => {
                self.current = None;
            }
            _ => {}
        }
        for line in render::render(event) {
            println!("{line}");
        }
    }

    async fn line(&mut self, line: &str) {
        match parse(line) {
            Ok(command) => self.command(command).await,
            Err(why) => println!("! {why}"),
        }
    }

    async fn quit(&mut self) {
        if !self.quitting {
            self.quitting = true;
            println!("* closing chats and unregistering…");
            self.run(Command::Shutdown).await;
        }
    }

    fn nick(&self, s: &str) -> Option<Nick> {
        match Nick::new(s) {
            Ok(n) => Some(n),
            Err(e) => {
                println!("! {s:?} is not a nick: {e}");
                None
            }
        }
    }

    /// Runs a runtime command; prints its error, if any. Returns the answer.
    async fn run(&self, command: Command) -> Option<Answer> {
        match self.peer.command(command).await {
            Ok(Ok(answer)) => Some(answer),
            Ok(Err(e)) => {
                println!("! {e}");
                None
            }
            Err(e) => {
                println!("! {e}");
                None
            }
        }
    }

    async fn send(&mut self, nick: Nick, text: String) {
        if let Some(Answer::MessageId(id)) = self.run(Command::Send(nick.clone(), text)).await {
            println!("* #{id} sent to {nick}");
        }
    }

    async fn command(&mut self, command: UiCommand) {
        if self.quitting && command != UiCommand::Nothing {
            println!("! quitting; please wait");
            return;
        }
        match command {
            UiCommand::Nothing => {}
            UiCommand::Help => println!("{HELP}"),
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
                    self.current = Some(nick);
                }
            }
            UiCommand::Accept(nick) => {
                let Some(nick) = self.nick(&nick) else { return };
                match self.requests.remove(&nick) {
                    Some(request) => {
                        if self.run(Command::Accept(request)).await.is_some() {
                            self.current = Some(nick);
                        }
                    }
                    None => println!("! {nick} has not asked to chat (or gave up)"),
                }
            }
            UiCommand::Deny(nick, reason) => {
                let Some(nick) = self.nick(&nick) else { return };
                match self.requests.remove(&nick) {
                    Some(request) => {
                        let reason = if reason.is_empty() {
                            "denied".to_owned()
                        } else {
                            reason
                        };
                        if self.run(Command::Deny(request, reason)).await.is_some() {
                            println!("* denied {nick}");
                        }
                    }
                    None => println!("! {nick} has not asked to chat (or gave up)"),
                }
            }
            UiCommand::Chats => {
                if let Some(Answer::Chats(chats)) = self.run(Command::Chats).await {
                    if chats.is_empty() {
                        println!("* no chats; /connect NICK to open one");
                    }
                    for (nick, state) in chats {
                        let mark = if self.current.as_ref() == Some(&nick) {
                            ">"
                        } else {
                            " "
                        };
                        println!("{mark} {nick}: {state:?}");
                    }
                }
            }
            UiCommand::Switch(nick) => {
                if let Some(nick) = self.nick(&nick) {
                    println!("* talking to {nick}");
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
                None => println!("! no current chat: /connect NICK, /accept NICK or /switch NICK"),
            },
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
                    println!("* you ({}): {f}", self.me);
                }
            }
            UiCommand::Fingerprint(Some(nick)) => {
                let Some(nick) = self.nick(&nick) else { return };
                match self.run(Command::Fingerprint(Some(nick.clone()))).await {
                    Some(Answer::Fingerprint(Some(f))) => println!("* {nick}: {f}"),
                    Some(_) => println!("! no chat with {nick}: its key is known once you connect"),
                    None => {}
                }
            }
        }
    }
}
