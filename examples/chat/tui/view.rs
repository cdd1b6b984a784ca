//! Drawing the screen: the conversation list, the open conversation, the
//! input line, the status line and the keys.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph};
use sotto::store::DeliveryState;
use unicode_width::UnicodeWidthChar;

use super::conversation::Shown;
use super::{App, Link};

/// The keys, on the bottom line.
const HELP: &str =
    "Enter send  Tab/S-Tab C-n/C-p switch  PgUp/PgDn scroll  Up/Down recall  C-c quit";

/// Width of the conversation list.
const LIST_WIDTH: u16 = 24;

pub(crate) fn draw(frame: &mut Frame<'_>, app: &mut App) {
    let [main, input, status, help] = Layout::vertical([
        Constraint::Min(3),
        Constraint::Length(3),
        Constraint::Length(1),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    let [list, conversation] =
        Layout::horizontal([Constraint::Length(LIST_WIDTH), Constraint::Min(10)]).areas(main);
    draw_list(frame, app, list);
    draw_conversation(frame, app, conversation);
    draw_input(frame, app, input);
    draw_status(frame, app, status);
    frame.render_widget(
        Paragraph::new(HELP).style(Style::new().fg(Color::DarkGray)),
        help,
    );
}

fn draw_list(frame: &mut Frame<'_>, app: &App, area: Rect) {
    let block = Block::bordered().title(" Conversations ");
    let inner = block.inner(area);
    let width = usize::from(inner.width);
    let open = app.open.as_ref().map(|o| o.index);
    let mut rows: Vec<Line<'_>> = Vec::new();
    for (i, c) in app.conversations.iter().enumerate() {
        let unread = match (c.unread, c.unread_more) {
            (0, _) => String::new(),
            (n, false) => n.to_string(),
            (n, true) => format!("{n}+"),
        };
        let marker = if open == Some(i) { "> " } else { "  " };
        let room = width.saturating_sub(2 + unread.len() + 1);
        let label = fit(&c.label, room);
        let pad = width.saturating_sub(2 + columns(&label) + unread.len());
        let mut style = Style::new();
        if open == Some(i) {
            style = style.add_modifier(Modifier::REVERSED);
        }
        if c.left {
            style = style.fg(Color::DarkGray);
        }
        rows.push(Line::from(vec![
            Span::styled(format!("{marker}{label}{}", " ".repeat(pad)), style),
            Span::styled(
                unread,
                Style::new().fg(Color::Yellow).add_modifier(Modifier::BOLD),
            ),
        ]));
    }
    if rows.is_empty() {
        rows.push(Line::from("no contacts yet:"));
        rows.push(Line::from("chat add NAME ADDRESS"));
    }
    // More conversations than rows: the open one stays in view.
    let height = usize::from(inner.height).max(1);
    let first = open.map_or(0, |i| (i + 1).saturating_sub(height));
    let rows: Vec<Line<'_>> = rows.into_iter().skip(first).collect();
    frame.render_widget(Paragraph::new(rows).block(block), area);
}

fn draw_conversation(frame: &mut Frame<'_>, app: &mut App, area: Rect) {
    let title = match app.open_conversation() {
        Some(c) => format!(" {} ", c.label),
        None => " No conversation ".to_owned(),
    };
    let mut block = Block::bordered().title(title);
    let inner = block.inner(area);
    let Some(open) = app.open.as_mut() else {
        frame.render_widget(block, area);
        return;
    };
    let width = usize::from(inner.width).max(1);
    let height = usize::from(inner.height);
    let mut rows: Vec<Line<'static>> = Vec::new();
    if open.complete {
        rows.push(Line::styled(
            "(beginning of the conversation)",
            Style::new().fg(Color::DarkGray),
        ));
    } else {
        rows.push(Line::styled(
            "(PgUp for older messages)",
            Style::new().fg(Color::DarkGray),
        ));
    }
    for (seq, m) in &open.messages {
        rows.extend(wrap(message_spans(*seq, m), width));
    }
    // Scrolled from the newest end, so that older pages coming in above
    // leave the view where it is.
    let top_limit = rows.len().saturating_sub(height);
    open.scroll = open.scroll.min(top_limit);
    app.view_rows = rows.len();
    app.view_height = height;
    app.view_width = width;
    if open.scroll > 0 {
        block = block.title_bottom(Line::from(" newer below: PgDn ").right_aligned());
    }
    let first = top_limit - open.scroll;
    let shown: Vec<Line<'static>> = rows.into_iter().skip(first).take(height).collect();
    frame.render_widget(Paragraph::new(shown).block(block), area);
}

/// How many rows `m` takes in a conversation `width` columns wide.
pub(crate) fn rows_of(seq: u64, m: &Shown, width: usize) -> usize {
    wrap(message_spans(seq, m), width.max(1)).len()
}

/// One message as styled pieces: `[seq] author: body  (mark)` (an event
/// of the conversation: `[seq] body`).
fn message_spans(seq: u64, m: &Shown) -> Vec<Span<'static>> {
    let dim = Style::new().fg(Color::DarkGray);
    let author_style = if m.outgoing {
        Style::new().fg(Color::Cyan).add_modifier(Modifier::BOLD)
    } else {
        Style::new().fg(Color::Green).add_modifier(Modifier::BOLD)
    };
    let mut spans = vec![Span::styled(format!("[{seq}] "), dim)];
    // Events of the conversation (a timer change) name no author.
    if !m.author.is_empty() {
        spans.push(Span::styled(format!("{}: ", m.author), author_style));
    }
    match &m.body {
        Ok(body) => spans.push(Span::raw(body.clone())),
        Err(why) => spans.push(Span::styled(
            format!("(unreadable: {why})"),
            Style::new().fg(Color::Red),
        )),
    }
    if m.outgoing
        && let Some(mark) = mark(m.state)
    {
        let style = match m.state {
            Some(DeliveryState::Failed(_)) => Style::new().fg(Color::Red),
            _ => dim,
        };
        spans.push(Span::styled(format!("  ({mark})"), style));
    }
    spans
}

/// The delivery mark of an outgoing message.
pub(crate) fn mark(state: Option<DeliveryState>) -> Option<String> {
    Some(match state? {
        DeliveryState::Pending => "queued".to_owned(),
        DeliveryState::Sent => "sent".to_owned(),
        DeliveryState::Delivered => "delivered".to_owned(),
        DeliveryState::Read => "read".to_owned(),
        DeliveryState::Failed(reason) => format!("not sent: {reason}"),
        _ => return None,
    })
}

/// Breaks styled pieces into rows of at most `width` columns, at a space
/// when there is one in the row, else anywhere.
fn wrap(spans: Vec<Span<'static>>, width: usize) -> Vec<Line<'static>> {
    // Every character with its style, then cut.
    let chars: Vec<(char, Style)> = spans
        .iter()
        .flat_map(|s| {
            s.content
                .chars()
                .map(|c| if c.is_control() { ' ' } else { c })
                .map(move |c| (c, s.style))
        })
        .collect();
    let mut rows = Vec::new();
    let mut start = 0;
    while start < chars.len() {
        let mut end = start;
        let mut used = 0;
        while end < chars.len() {
            let w = chars[end].0.width().unwrap_or(0);
            if used + w > width {
                break;
            }
            used += w;
            end += 1;
        }
        if end == start {
            // A character wider than the whole row: alone on its row.
            end = start + 1;
        } else if end < chars.len()
            && let Some(space) = chars[start..end].iter().rposition(|(c, _)| *c == ' ')
            && space > 0
        {
            end = start + space + 1;
        }
        rows.push(line_of(&chars[start..end]));
        start = end;
    }
    if rows.is_empty() {
        rows.push(Line::from(""));
    }
    rows
}

/// Joins runs of one style back into spans.
fn line_of(chars: &[(char, Style)]) -> Line<'static> {
    let mut spans: Vec<Span<'static>> = Vec::new();
    let mut run = String::new();
    let mut style = None;
    for (c, s) in chars {
        if style != Some(*s) {
            if let Some(prev) = style {
                spans.push(Span::styled(std::mem::take(&mut run), prev));
            }
            style = Some(*s);
        }
        run.push(*c);
    }
    if let Some(prev) = style {
        spans.push(Span::styled(run, prev));
    }
    Line::from(spans)
}

fn draw_input(frame: &mut Frame<'_>, app: &App, area: Rect) {
    let title = match app.open_conversation() {
        Some(c) if c.left => format!(" You left {} ", c.label),
        Some(c) => format!(" Message {} ", c.label),
        None => " Message ".to_owned(),
    };
    let block = Block::bordered().title(title);
    let inner = block.inner(area);
    let (text, cursor) = app
        .input
        .visible(usize::from(inner.width).saturating_sub(1));
    frame.render_widget(Paragraph::new(text).block(block), area);
    let x = inner
        .x
        .saturating_add(u16::try_from(cursor).unwrap_or(u16::MAX));
    frame.set_cursor_position((x.min(inner.right().saturating_sub(1)), inner.y));
}

fn draw_status(frame: &mut Frame<'_>, app: &App, area: Rect) {
    let (link, style) = match &app.link {
        Link::Connecting(relay) => (
            format!("connecting to {relay}..."),
            Style::new().fg(Color::Yellow),
        ),
        Link::Connected(relay) => (
            format!("connected to {relay}"),
            Style::new().fg(Color::Green),
        ),
        Link::Offline(why) => (
            format!("offline ({why}); retrying, messages wait in the outbox"),
            Style::new().fg(Color::Red),
        ),
        Link::NoRelay => (
            "no relay: run `chat register --relay ADDR`".to_owned(),
            Style::new().fg(Color::Red),
        ),
    };
    let mut spans = vec![Span::styled(
        format!(" {link} "),
        style.add_modifier(Modifier::BOLD),
    )];
    match &app.notice {
        _ if app.outgoing.is_some() => spans.push(Span::raw("| sending...")),
        Some(notice) => spans.push(Span::raw(format!("| {notice}"))),
        // This profile's address, cut: `chat whoami` prints it whole.
        None => spans.push(Span::styled(
            format!("| you are {}", fit(&app.me, 22)),
            Style::new().fg(Color::DarkGray),
        )),
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}

/// The display width of `s`.
fn columns(s: &str) -> usize {
    s.chars().map(|c| c.width().unwrap_or(0)).sum()
}

/// `s` cut to `width` columns, with `…` where it was cut.
fn fit(s: &str, width: usize) -> String {
    if columns(s) <= width {
        return s.to_owned();
    }
    let mut out = String::new();
    let mut used = 0;
    for c in s.chars() {
        let w = c.width().unwrap_or(0);
        if used + w + 1 > width {
            break;
        }
        used += w;
        out.push(c);
    }
    out.push('…');
    out
}
