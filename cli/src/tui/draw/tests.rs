//! Each state of the interface, drawn on ratatui's `TestBackend` and read back as text.

use core::time::Duration;

use p2pchat_core::nick::Nick;
use p2pchat_core::peer::{
    ChatState, ChatView, Event, KeyConflict, PeerView, RegistryView, RequestView,
};
use p2pchat_core::time::Instant;
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::buffer::Buffer;
use unicode_width::UnicodeWidthStr;

use super::draw;
use crate::chat_ui::Screen;
use crate::tui::app::App;
use crate::tui::test_views::{contact, empty_view, fingerprint};

fn nick(s: &str) -> Nick {
    Nick::new(s).unwrap()
}

fn chat(name: &str, i: usize, state: ChatState, unread: usize) -> ChatView {
    ChatView {
        nick: nick(name),
        state,
        fingerprint: Some(fingerprint(i)),
        unread,
    }
}

/// Carol, a contact, presented another key than the one pinned.
fn carol_with_a_changed_key() -> PeerView {
    let mut view = empty_view();
    let mut carol = contact("carol", 2);
    carol.conflict = Some(KeyConflict {
        pinned: fingerprint(2),
        presented: fingerprint(5),
        certificate: None,
    });
    view.contacts = vec![carol];
    view
}

fn app() -> App {
    App::new("tor (launch): bootstrapped, onion published".into(), false)
}

/// Draws on a `width` × `height` screen; returns the buffer and its rows as text.
fn render(
    app: &App,
    view: &PeerView,
    current: Option<&str>,
    width: u16,
    height: u16,
) -> (Buffer, String) {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    let current = current.map(nick);
    terminal
        .draw(|f| draw(f, app, view, current.as_ref(), Duration::ZERO))
        .unwrap();
    let buffer = terminal.backend().buffer().clone();
    let mut text = String::new();
    for y in 0..height {
        // A wide character's cell is followed by one the terminal leaves to it: skipped,
        // so each row reads as the terminal shows it.
        let mut x = 0;
        while x < width {
            let symbol = buffer[(x, y)].symbol();
            text.push_str(symbol);
            x += u16::try_from(symbol.width().max(1)).unwrap_or(1);
        }
        text.push('\n');
    }
    (buffer, text)
}

#[test]
fn an_empty_screen_says_how_to_start_and_shows_who_we_are() {
    let (_, screen) = render(&app(), &empty_view(), None, 80, 24);
    assert!(screen.contains("alice │ registry: online"), "{screen}");
    assert!(screen.contains("No conversation open."), "{screen}");
    assert!(screen.contains("bootstrapped, onion published"), "{screen}");
    // Where the whole address and key do not fit, they are shortened, not cut off; wide
    // enough, whole.
    let view = empty_view();
    let onion = view.onion.hostname();
    let key = view.fingerprint.to_string();
    let (_, medium) = render(&app(), &view, None, 120, 24);
    let status = medium.lines().next().unwrap();
    assert!(status.contains(&format!("{}…", &onion[..16])), "{status}");
    assert!(status.contains(&format!("key {}…", &key[..19])), "{status}");
    let (_, wide) = render(&app(), &view, None, 250, 24);
    let status = wide.lines().next().unwrap();
    assert!(status.contains(&format!("{onion} │ key {key}")), "{status}");
    assert!(screen.contains("/connect NICK"), "{screen}");
}

#[test]
fn several_chats_show_presence_state_unread_and_queued_counts() {
    let mut view = empty_view();
    let mut carol = contact("carol", 2);
    carol.online = Some(false);
    carol.queued = 3;
    view.contacts = vec![contact("bob", 1), carol];
    view.chats = vec![
        chat("bob", 1, ChatState::Connected, 2),
        chat("dave", 3, ChatState::Connecting, 0),
    ];
    let mut app = app();
    app.conversation_event(&Event::Message {
        nick: nick("bob"),
        id: 1,
        text: "hello alice".into(),
    });
    let (_, screen) = render(&app, &view, Some("bob"), 80, 24);
    assert!(screen.contains(">● bob (2)"), "{screen}");
    assert!(screen.contains(" ○ carol q3"), "{screen}");
    assert!(screen.contains(" · dave …"), "{screen}");
    assert!(
        screen.contains("bob · connected (end-to-end encrypted)"),
        "{screen}"
    );
    assert!(screen.contains("<bob> hello alice"), "{screen}");
}

#[test]
fn an_incoming_request_is_a_prompt_to_accept_or_deny() {
    let mut view = empty_view();
    view.requests = vec![RequestView {
        request: 7,
        nick: nick("dave"),
        fingerprint: fingerprint(3),
    }];
    let (buffer, screen) = render(&app(), &view, None, 80, 24);
    assert!(
        screen.contains("?? dave wants to chat: F2 accept · F3 deny"),
        "{screen}"
    );
    assert!(screen.contains("? dave  F2/F3"), "{screen}");
    // The prompt stands out.
    assert_eq!(buffer[(0, 1)].fg, ratatui::style::Color::Yellow);
}

#[test]
fn a_key_change_warning_stands_above_everything_and_stays() {
    let view = carol_with_a_changed_key();
    let mut app = app();
    // However much the conversation scrolls, the warning is on the second row.
    app.scroll = 1000;
    let (buffer, screen) = render(&app, &view, Some("carol"), 80, 24);
    let second_row: String = (0..80)
        .map(|x| buffer[(x, 1)].symbol().to_owned())
        .collect();
    assert!(
        second_row.contains("!! possible impersonation: the key of carol changed"),
        "{screen}"
    );
    assert_eq!(buffer[(0, 1)].fg, ratatui::style::Color::Red);
    assert!(screen.contains(" carol !!"), "{screen}");
}

#[test]
fn queued_sent_delivered_and_failed_messages_show_their_receipts() {
    let mut view = empty_view();
    view.contacts = vec![contact("bob", 1)];
    let mut app = app();
    let bob = nick("bob");
    for id in 1..=4 {
        app.queued(&bob, id, &format!("message {id}"));
    }
    app.conversation_event(&Event::Sent {
        nick: bob.clone(),
        id: 2,
    });
    app.conversation_event(&Event::Delivered {
        nick: bob.clone(),
        id: 3,
    });
    app.conversation_event(&Event::Failed {
        nick: bob.clone(),
        id: 4,
        reason: "bob denied the chat: busy\u{202e}".into(),
    });
    let (_, screen) = render(&app, &view, Some("bob"), 100, 24);
    assert!(screen.contains("<alice> message 1  … queued"), "{screen}");
    assert!(screen.contains("<alice> message 2  → sent"), "{screen}");
    assert!(
        screen.contains("<alice> message 3  ✓ delivered"),
        "{screen}"
    );
    assert!(
        screen.contains("<alice> message 4  ✗ not delivered: bob denied the chat: busy"),
        "{screen}"
    );
    // The bidi override from the network is gone.
    assert!(!screen.contains('\u{202e}'));
    assert!(screen.contains("no chat — what you type waits"), "{screen}");
}

#[test]
fn a_retrying_chat_counts_down_and_offers_retry_now() {
    let mut view = empty_view();
    view.contacts = vec![contact("bob", 1)];
    view.chats = vec![chat(
        "bob",
        1,
        ChatState::Retrying {
            at: Instant::ZERO + Duration::from_secs(42),
            attempt: 3,
        },
        0,
    )];
    let (_, screen) = render(&app(), &view, Some("bob"), 100, 24);
    assert!(
        screen.contains("retrying in 42 s (attempt 3) — F5 retries now"),
        "{screen}"
    );
}

#[test]
fn wide_characters_and_a_narrow_terminal_are_drawn_without_overflow() {
    let mut view = empty_view();
    view.contacts = vec![contact("bob", 1)];
    view.chats = vec![chat("bob", 1, ChatState::Connected, 0)];
    let mut app = app();
    app.conversation_event(&Event::Message {
        nick: nick("bob"),
        id: 1,
        text: "你好你好你好你好你好你好你好你好你好你好 👋👋👋".into(),
    });
    for size in [(80, 24), (40, 12), (20, 8), (10, 5)] {
        let (_, screen) = render(&app, &view, Some("bob"), size.0, size.1);
        // Every row is exactly the terminal's width in columns (a wide character takes two
        // cells, the second left empty): nothing spills over or is cut in half.
        for row in screen.lines() {
            assert_eq!(row.width(), usize::from(size.0), "{row:?} in\n{screen}");
        }
    }
    // At 80 columns the message is wrapped by display width, so none of it is clipped.
    let (_, screen) = render(&app, &view, Some("bob"), 80, 24);
    assert_eq!(screen.matches('你').count(), 10, "{screen}");
    assert_eq!(screen.matches('👋').count(), 3, "{screen}");
    let lines = super::wrap("你好你好 ab", 5);
    assert_eq!(lines, vec!["你好", "你好 ", "ab"]);
}

#[test]
fn the_help_lists_the_keys_and_the_commands() {
    let mut app = app();
    app.help = true;
    let (_, screen) = render(&app, &empty_view(), None, 100, 60);
    assert!(screen.contains("help — any key closes"), "{screen}");
    assert!(screen.contains("F2 / F3"), "{screen}");
    assert!(screen.contains("/verify NICK FPR"), "{screen}");
}

#[test]
fn no_color_draws_warnings_without_colour() {
    let view = carol_with_a_changed_key();
    let plain = App::new("tor".into(), true);
    let (buffer, _) = render(&plain, &view, None, 80, 24);
    for y in 0..24 {
        for x in 0..80 {
            assert_eq!(buffer[(x, y)].fg, ratatui::style::Color::Reset);
        }
    }
    // With colours, the same warning is red.
    let (buffer, _) = render(&app(), &view, None, 80, 24);
    let red = (0..24)
        .flat_map(|y| (0..80).map(move |x| (x, y)))
        .filter(|&(x, y)| buffer[(x, y)].fg == ratatui::style::Color::Red)
        .count();
    assert!(red > 0, "the key-change warning is not red with colours on");
}

#[test]
fn message_times_are_shown_in_the_time_zone_given() {
    let at = p2pchat_core::peer::WallTime(1_700_000_000_000); // 2023-11-14 22:13:20 UTC
    assert_eq!(super::clock(at, &jiff::tz::TimeZone::UTC), "22:13");
    let tokyo = jiff::tz::TimeZone::fixed(jiff::tz::offset(9));
    assert_eq!(super::clock(at, &tokyo), "07:13");
}

#[test]
fn a_registry_that_is_down_shows_why_in_the_status_bar() {
    let mut view = empty_view();
    view.registry = RegistryView::Down {
        reason: "the registry did not answer for 90 s".into(),
        retry_at: Some(Instant::ZERO + Duration::from_secs(30)),
    };
    let (_, screen) = render(&app(), &view, None, 120, 24);
    assert!(
        screen.contains("registry: down, retrying (the registry did not answer for 90 s)"),
        "{screen}"
    );
}

#[test]
fn page_up_stops_at_the_top_so_page_down_moves_back_at_once() {
    use crossterm::event::{KeyCode, KeyEvent};
    let mut view = empty_view();
    view.contacts = vec![contact("bob", 1)];
    let mut app = app();
    let bob = nick("bob");
    for id in 1..=40 {
        app.queued(&bob, id, &format!("line {id}"));
    }
    let (_, bottom) = render(&app, &view, Some("bob"), 80, 24);
    assert!(
        bottom.contains("line 40") && !bottom.contains("line 1 "),
        "{bottom}"
    );
    for _ in 0..20 {
        app.key(KeyEvent::from(KeyCode::PageUp), &view);
        render(&app, &view, Some("bob"), 80, 24);
    }
    let (_, top) = render(&app, &view, Some("bob"), 80, 24);
    assert!(top.contains("line 1 ") && !top.contains("line 40"), "{top}");
    // One PageDown after twenty PageUps moves the page: the count stopped at the top.
    app.key(KeyEvent::from(KeyCode::PageDown), &view);
    let (_, after) = render(&app, &view, Some("bob"), 80, 24);
    assert!(!after.contains("line 1 "), "{after}");
}
