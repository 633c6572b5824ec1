//! Drawing the full-screen interface: a pure function of the interface's state and the
//! core's view, so every state can be checked on ratatui's `TestBackend`.
//!
//! ```text
//!  alice │ registry: online │ tor (launch): connected to the Tor network │ r4onbk34g2xq7lfd… │ key 4DB1 0869 5C2E 11AF…
//! !! possible impersonation: the key of carol changed. Messages go only to the pinned key: …
//! ?? dave wants to chat: F2 accept · F3 deny (or /accept dave, /deny dave REASON) · key …
//! ┌ chats ───────────────┐┌ bob · connected (end-to-end encrypted) ──────────────────┐
//! │>● bob (2)            ││12:01 <bob> hi                                            │
//! │ ○ carol q1 !!        ││12:02 <alice> hello  ✓ delivered                          │
//! │ requests             ││                                                          │
//! │ ? dave  F2/F3        ││                                                          │
//! └──────────────────────┘└ key CED3 2A56 884B DF8F … ────────────────────────────────┘
//! * bob: connected (end-to-end encrypted)        (the last notices)
//! > hello_
//! ```

use core::time::Duration;

use p2pchat_core::nick::Nick;
use p2pchat_core::peer::{ChatState, ChatView, PeerView, RegistryView, WallTime};
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Position, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph};
use unicode_width::{UnicodeWidthChar, UnicodeWidthStr};

use super::app::{App, Receipt};
use crate::chat_ui::parse::HELP;
use crate::chat_ui::render::clean;

/// Keys, for the help screen.
const KEYS: &str = "\
keys:
  Enter         run a /command, or send the line to the current chat
  Tab           complete a command or a nick
  Up / Down     earlier lines you typed
  Ctrl-N/Ctrl-P next / previous conversation (also Alt-Down / Alt-Up)
  PageUp/Down   scroll the conversation
  F2 / F3       accept / deny the oldest chat request
  F5            reconnect the current chat now
  ?             this help (on an empty line); any key closes it
  Ctrl-C        close chats, unregister and quit (/quit does too)";

/// Notices shown under the conversation.
const NOTICE_LINES: u16 = 3;
/// Most rows of warnings and prompts above the conversation.
const MAX_BANNER: u16 = 6;
/// Width of the conversation list.
const SIDEBAR: u16 = 24;

/// Styles, or none of them with `NO_COLOR` (bold and reverse stay: they are not colour).
struct Styles {
    no_color: bool,
}

impl Styles {
    fn fg(&self, color: Color) -> Style {
        if self.no_color {
            Style::default()
        } else {
            Style::default().fg(color)
        }
    }
    fn warning(&self) -> Style {
        self.fg(Color::Red).add_modifier(Modifier::BOLD)
    }
    fn prompt(&self) -> Style {
        self.fg(Color::Yellow).add_modifier(Modifier::BOLD)
    }
    fn dim(&self) -> Style {
        if self.no_color {
            Style::default()
        } else {
            Style::default().add_modifier(Modifier::DIM)
        }
    }
    fn bar(&self) -> Style {
        Style::default().add_modifier(Modifier::REVERSED)
    }
}

/// Draws everything. `current` is the conversation shown; `age` is how long ago `view` was
/// published (to count down retries).
pub(crate) fn draw(
    frame: &mut Frame,
    app: &App,
    view: &PeerView,
    current: Option<&Nick>,
    age: Duration,
) {
    let s = Styles {
        no_color: app.no_color,
    };
    let banner = banner_lines(view, &s, usize::from(frame.area().width));
    let banner_height = u16::try_from(banner.len())
        .unwrap_or(u16::MAX)
        .min(MAX_BANNER);
    let [status, warnings, body, notices, input] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(banner_height),
        Constraint::Min(3),
        Constraint::Length(NOTICE_LINES),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    frame.render_widget(
        Paragraph::new(status_line(view, app, usize::from(status.width))).style(s.bar()),
        status,
    );
    frame.render_widget(Paragraph::new(banner), warnings);
    let sidebar = SIDEBAR.min(body.width / 3);
    let [list, main] =
        Layout::horizontal([Constraint::Length(sidebar), Constraint::Min(10)]).areas(body);
    draw_list(frame, list, view, current, &s);
    draw_conversation(frame, main, app, view, current, age, &s);
    let lines: Vec<Line> = app
        .notices(usize::from(NOTICE_LINES))
        .into_iter()
        .map(|n| Line::styled(n, s.dim()))
        .collect();
    frame.render_widget(Paragraph::new(lines), notices);
    draw_input(frame, input, app);
    if app.help {
        draw_help(frame, &s);
    }
}

/// The status bar, most important first: who we are, the registry, Tor, what waits, then
/// our onion address and key — shortened (`/fingerprint` shows them whole) when the full
/// line would not fit in `width`.
fn status_line(view: &PeerView, app: &App, width: usize) -> String {
    let registry = match &view.registry {
        RegistryView::Idle => "registry: not registered".to_owned(),
        RegistryView::Connecting { after: None } => "registry: connecting…".to_owned(),
        RegistryView::Connecting { after: Some(why) } => {
            format!("registry: reconnecting ({})", clean(why))
        }
        RegistryView::Registered => "registry: online".to_owned(),
        RegistryView::Down {
            reason,
            retry_at: Some(_),
        } => format!("registry: down, retrying ({})", clean(reason)),
        RegistryView::Down {
            reason,
            retry_at: None,
        } => format!("registry: refused ({})", clean(reason)),
    };
    let mut head = format!(" {} │ {registry} │ {}", view.nick, app.tor);
    if view.queued > 0 {
        head.push_str(&format!(" │ {} waiting", view.queued));
    }
    let onion = view.onion.hostname();
    let key = view.fingerprint.to_string();
    let full = format!("{head} │ {onion} │ key {key}");
    if full.width() <= width {
        return full;
    }
    // The first 16 characters of the address and 4 groups of the key tell identities
    // apart at a glance.
    let short_onion: String = onion.chars().take(16).collect();
    let short_key: String = key.chars().take(19).collect();
    format!("{head} │ {short_onion}… │ key {short_key}…")
}

/// Warnings that must not be missed (a contact's key changed), then requests to answer,
/// wrapped to `width`: they stay above the conversation, whatever scrolls.
fn banner_lines<'a>(view: &PeerView, s: &Styles, width: usize) -> Vec<Line<'a>> {
    let mut lines = Vec::new();
    for c in view.contacts.iter().filter(|c| c.conflict.is_some()) {
        let text = format!(
            "!! possible impersonation: the key of {0} changed. Messages go only to the pinned key: /verify {0} FINGERPRINT or /trust {0} FINGERPRINT",
            c.nick
        );
        for part in wrap(&text, width) {
            lines.push(Line::styled(part, s.warning()));
        }
    }
    for r in &view.requests {
        let text = format!(
            "?? {0} wants to chat: F2 accept · F3 deny (or /accept {0}, /deny {0} REASON) · key {1}",
            r.nick, r.fingerprint
        );
        for part in wrap(&text, width) {
            lines.push(Line::styled(part, s.prompt()));
        }
    }
    lines
}

/// The conversations: every contact and every chat, in nick order.
pub(crate) fn conversations(view: &PeerView) -> Vec<Nick> {
    let mut nicks: Vec<Nick> = view
        .contacts
        .iter()
        .map(|c| c.nick.clone())
        .chain(view.chats.iter().map(|c| c.nick.clone()))
        .collect();
    nicks.sort_by_key(Nick::canonical);
    nicks.dedup();
    nicks
}

fn draw_list(frame: &mut Frame, area: Rect, view: &PeerView, current: Option<&Nick>, s: &Styles) {
    let mut lines = Vec::new();
    for nick in conversations(view) {
        let contact = view.contacts.iter().find(|c| c.nick == nick);
        let chat = view.chats.iter().find(|c| c.nick == nick);
        let connected = chat.is_some_and(|c| c.state == ChatState::Connected);
        let presence = match contact.and_then(|c| c.online) {
            _ if connected => "●",
            Some(true) => "●",
            Some(false) => "○",
            None => "·",
        };
        let state = match chat.map(|c| &c.state) {
            Some(ChatState::Connected) => "",
            Some(ChatState::Retrying { .. }) => " ↻",
            Some(ChatState::Closing) => " ×",
            Some(_) => " …",
            None => "",
        };
        let mut marks = String::new();
        let unread = chat.map(|c| c.unread).or(contact.map(|c| c.unread));
        if let Some(n) = unread.filter(|n| *n > 0) {
            marks.push_str(&format!(" ({n})"));
        }
        if let Some(q) = contact.map(|c| c.queued).filter(|q| *q > 0) {
            marks.push_str(&format!(" q{q}"));
        }
        if contact.is_some_and(|c| c.conflict.is_some()) {
            marks.push_str(" !!");
        }
        let selected = current == Some(&nick);
        let text = format!(
            "{}{presence} {nick}{state}{marks}",
            if selected { ">" } else { " " }
        );
        let style = if contact.is_some_and(|c| c.conflict.is_some()) {
            s.warning()
        } else if selected {
            Style::default().add_modifier(Modifier::BOLD)
        } else {
            Style::default()
        };
        lines.push(Line::styled(text, style));
    }
    if lines.is_empty() {
        lines.push(Line::styled(" no chats yet:", s.dim()));
        lines.push(Line::styled(" /connect NICK", s.dim()));
    }
    if !view.requests.is_empty() {
        lines.push(Line::raw(""));
        lines.push(Line::styled(" requests", s.prompt()));
        for r in &view.requests {
            lines.push(Line::styled(format!(" ? {}  F2/F3", r.nick), s.prompt()));
        }
    }
    let block = Block::default().borders(Borders::ALL).title(" chats ");
    frame.render_widget(Paragraph::new(lines).block(block), area);
}

/// How a chat stands, in words.
fn chat_words(chat: Option<&ChatView>, view: &PeerView, age: Duration) -> String {
    match chat.map(|c| &c.state) {
        Some(ChatState::LookingUp) => "looking up…".into(),
        Some(ChatState::Connecting) => "connecting…".into(),
        Some(ChatState::AwaitingAcceptance) => "waiting for them to accept…".into(),
        Some(ChatState::Connected) => "connected (end-to-end encrypted)".into(),
        Some(ChatState::Retrying { at, attempt }) => {
            let left = at.saturating_duration_since(view.now).saturating_sub(age);
            format!(
                "retrying in {} s (attempt {attempt}) — F5 retries now",
                left.as_secs()
            )
        }
        Some(ChatState::Closing) => "closing…".into(),
        None => "no chat — what you type waits and is delivered when they are reachable".into(),
    }
}

/// "HH:MM" of a wall-clock time in `tz`.
fn clock(at: WallTime, tz: &jiff::tz::TimeZone) -> String {
    i64::try_from(at.0)
        .ok()
        .and_then(|ms| jiff::Timestamp::from_millisecond(ms).ok())
        .map_or_else(
            || "--:--".to_owned(),
            |t| {
                t.to_zoned_datetime(tz.clone())
                    .strftime("%H:%M")
                    .to_string()
            },
        )
}

fn draw_conversation(
    frame: &mut Frame,
    area: Rect,
    app: &App,
    view: &PeerView,
    current: Option<&Nick>,
    age: Duration,
    s: &Styles,
) {
    let Some(nick) = current else {
        let block = Block::default().borders(Borders::ALL).title(" p2pchat ");
        let text = vec![
            Line::raw("No conversation open."),
            Line::raw("/connect NICK opens a chat; /users lists who is online."),
            Line::raw("Press ? on an empty line for help."),
        ];
        frame.render_widget(Paragraph::new(text).block(block), area);
        return;
    };
    let chat = view.chats.iter().find(|c| c.nick == *nick);
    let state = match app.dialing.get(nick) {
        Some(dialing) => dialing.clone(),
        None => chat_words(chat, view, age),
    };
    let title = format!(" {nick} · {state} ");
    let fingerprint = chat
        .and_then(|c| c.fingerprint)
        .or_else(|| {
            view.contacts
                .iter()
                .find(|c| c.nick == *nick)
                .and_then(|c| c.fingerprint)
        })
        .map_or_else(|| "key not known yet".to_owned(), |f| format!("key {f}"));
    let block = Block::default()
        .borders(Borders::ALL)
        .title(title)
        .title_bottom(format!(" {fingerprint} "));
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let width = usize::from(inner.width.max(1));
    let mut lines: Vec<Line> = Vec::new();
    for e in app.log(nick) {
        let who = if e.receipt.is_some() {
            view.nick.to_string()
        } else {
            nick.to_string()
        };
        let receipt = match &e.receipt {
            None => String::new(),
            Some(Receipt::Queued) => "  … queued".into(),
            Some(Receipt::Sent) => "  → sent".into(),
            Some(Receipt::Delivered) => "  ✓ delivered".into(),
            Some(Receipt::Failed(why)) => format!("  ✗ not delivered: {why}"),
        };
        let style = match &e.receipt {
            Some(Receipt::Failed(_)) => s.warning(),
            Some(Receipt::Queued) => s.dim(),
            _ => Style::default(),
        };
        let text = format!("{} <{who}> {}{receipt}", clock(e.at, &app.tz), e.text);
        for part in wrap(&text, width) {
            lines.push(Line::styled(part, style));
        }
    }
    let height = usize::from(inner.height);
    let limit = lines.len().saturating_sub(height);
    app.scroll_limit.set(limit);
    let end = lines.len() - app.scroll.min(limit);
    let start = end.saturating_sub(height);
    let shown: Vec<Line> = lines[start..end].to_vec();
    frame.render_widget(Paragraph::new(shown), inner);
}

/// Splits `text` into lines at most `width` columns wide (wide characters count two),
/// after the last space that fits, or inside a word too long for a line.
pub(crate) fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut line = String::new();
    for c in text.chars() {
        if line.width() + c.width().unwrap_or(0) > width && !line.is_empty() {
            let rest = match line.rfind(' ') {
                Some(space) if space > 0 => line.split_off(space + 1),
                _ => String::new(),
            };
            out.push(std::mem::replace(&mut line, rest));
        }
        line.push(c);
    }
    out.push(line);
    out
}

fn draw_input(frame: &mut Frame, area: Rect, app: &App) {
    let prompt = "> ";
    let before = app.input.before_cursor();
    let cursor = prompt.width() + before.width();
    let room = usize::from(area.width.saturating_sub(1));
    // A line wider than the screen shows its end, with the cursor in view.
    let skip = cursor.saturating_sub(room);
    let mut shown = String::new();
    let mut col = 0;
    for c in format!("{prompt}{}", app.input.text).chars() {
        let w = c.width().unwrap_or(0);
        if col >= skip {
            shown.push(c);
        }
        col += w;
    }
    frame.render_widget(Paragraph::new(Line::from(Span::raw(shown))), area);
    let x = area.x + u16::try_from(cursor - skip).unwrap_or(area.width);
    frame.set_cursor_position(Position::new(x.min(area.right().saturating_sub(1)), area.y));
}

fn draw_help(frame: &mut Frame, s: &Styles) {
    let area = frame.area();
    let text = format!("{KEYS}\n\n{HELP}");
    let height = u16::try_from(text.lines().count() + 2).unwrap_or(u16::MAX);
    let box_area = Rect {
        x: area.x + 1,
        y: area.y + 1,
        width: area.width.saturating_sub(2),
        height: height.min(area.height.saturating_sub(2)),
    };
    frame.render_widget(Clear, box_area);
    let block = Block::default()
        .borders(Borders::ALL)
        .title(" help — any key closes ")
        .border_style(s.prompt());
    frame.render_widget(Paragraph::new(text).block(block), box_area);
}

#[cfg(test)]
mod tests;
