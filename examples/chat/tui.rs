//! `chat` (or `chat tui`): the full-screen interface. Conversations on
//! the left with their unread counts, the open one on the right from the
//! encrypted history, delivery marks, the connection state, and an input
//! line with editing and the lines typed before.

#[path = "tui/conversation.rs"]
mod conversation;
#[path = "tui/input.rs"]
mod input;
#[path = "tui/view.rs"]
mod view;

use std::collections::VecDeque;
use std::io::IsTerminal;

use crossterm::event::{Event, EventStream, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use sotto::store::DeliveryState;
use sotto::{Client, ClientEvent, SendStatus};
use tokio_stream::StreamExt;

use crate::CliResult;
use conversation::{Conversation, Names, Open, PAGE, Peer, Shown};
use input::InputLine;

/// The interface draws on the terminal and reads keys from it: refuse at
/// once (before asking for the passphrase) when there is none.
pub(crate) fn need_terminal() -> CliResult<()> {
    if std::io::stdin().is_terminal() && std::io::stdout().is_terminal() {
        return Ok(());
    }
    Err("the interface needs a terminal; for scripts and pipes use `chat talk NAME`, `chat send NAME TEXT` or `chat sync` (`chat --help` lists every command)".into())
}

/// The relay connection, as the status line shows it.
pub(crate) enum Link {
    Connecting(String),
    Connected(String),
    Offline(String),
    NoRelay,
}

pub(crate) struct App {
    client: Client,
    /// This profile's address, for the status line.
    me: String,
    conversations: Vec<Conversation>,
    names: Names,
    open: Option<Open>,
    input: InputLine,
    link: Link,
    relay: Option<String>,
    /// The last thing worth telling (an error, a safety number).
    notice: Option<String>,
    /// Rows of the open conversation at the last drawing, and how many
    /// fit: what scrolling works with.
    view_rows: usize,
    view_height: usize,
    view_width: usize,
    /// A line to send, taken by the loop.
    outgoing: Option<Outgoing>,
    quit: bool,
}

/// A line on its way to a conversation.
struct Outgoing {
    peer: Peer,
    key: String,
    text: String,
}

impl Outgoing {
    /// Sends it; the message is stored before anything leaves, so a send
    /// cut short (the user quits) goes out on a later connection, or was
    /// never stored.
    async fn send(
        client: Client,
        peer: Peer,
        key: String,
        text: String,
    ) -> sotto::Result<sotto::Sent> {
        match peer {
            Peer::Contact(_) => client.send(&key, text.as_bytes()).await,
            Peer::Group(_) => client.send_to_group(&key, text.as_bytes()).await,
        }
    }
}

/// Leaves the terminal as it was (raw mode off, the normal screen back,
/// the cursor shown) when dropped: on every way out, errors included.
/// A panic is covered by the hook `ratatui::try_init` installs.
struct TerminalGuard;

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        ratatui::restore();
        let _ = crossterm::execute!(std::io::stdout(), crossterm::cursor::Show);
    }
}

pub(crate) async fn run(client: &Client) -> CliResult<()> {
    need_terminal()?;
    let s = |e: sotto::Error| e.to_string();
    // Subscribed before connecting: the first connection's events count.
    let mut events = client.events();
    let (conversations, names, unreadable) = conversation::list(client).await?;
    let relay = client.saved_relay();
    let link = match &relay {
        Some(relay) => {
            client.keep_connected(relay).await.map_err(s)?;
            Link::Connecting(relay.clone())
        }
        None => Link::NoRelay,
    };
    let mut app = App {
        client: client.clone(),
        me: client.address().to_string(),
        conversations,
        names,
        open: None,
        input: InputLine::default(),
        link,
        relay,
        notice: (unreadable > 0).then(|| {
            format!(
                "{unreadable} contact(s) could not be read: the store is damaged (run `chat check`)"
            )
        }),
        view_rows: 0,
        view_height: 0,
        view_width: 0,
        outgoing: None,
        quit: false,
    };
    if !app.conversations.is_empty() {
        app.open_at(0).await;
    }

    let mut terminal = match ratatui::try_init() {
        Ok(t) => t,
        Err(e) => {
            ratatui::restore();
            return Err(format!("cannot set up the terminal: {e}"));
        }
    };
    let guard = TerminalGuard;
    let mut keys = EventStream::new();
    let mut signals = Signals::new()?;
    let draw_error = |e: std::io::Error| format!("cannot draw on the terminal: {e}");
    // Keys typed while a message was being sent, in order.
    let mut typed: VecDeque<KeyEvent> = VecDeque::new();
    while !app.quit {
        terminal
            .draw(|frame| view::draw(frame, &mut app))
            .map_err(draw_error)?;
        if let Some(out) = app.outgoing.take() {
            // One send at a time, in the order typed; keys keep being
            // read meanwhile, so that a slow relay never keeps the user
            // from quitting.
            let send = Outgoing::send(
                client.clone(),
                out.peer.clone(),
                out.key.clone(),
                out.text.clone(),
            );
            tokio::pin!(send);
            let result = loop {
                tokio::select! {
                    result = &mut send => break Some(result),
                    key = keys.next() => match key {
                        Some(Ok(Event::Key(key))) if is_quit(&key) => break None,
                        Some(Ok(Event::Key(key))) => typed.push_back(key),
                        Some(Ok(_)) => {}
                        Some(Err(e)) => return Err(format!("cannot read the terminal: {e}")),
                        None => break None,
                    },
                    () = signals.next() => break None,
                }
            };
            match result {
                Some(result) => app.sent(out, result),
                None => app.quit = true,
            }
            continue;
        }
        if let Some(key) = typed.pop_front() {
            app.key(key).await;
            continue;
        }
        tokio::select! {
            key = keys.next() => match key {
                Some(Ok(Event::Key(key))) => app.key(key).await,
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(format!("cannot read the terminal: {e}")),
                None => break,
            },
            event = events.next() => match event {
                Some(event) => app.client_event(event).await,
                None => break,
            },
            () = signals.next() => break,
        }
    }
    drop(terminal);
    // The terminal back first: the caller disconnects, which can take a
    // moment (an envelope being stored is finished first).
    drop(guard);
    Ok(())
}

/// Ctrl-C or Ctrl-Q.
fn is_quit(key: &KeyEvent) -> bool {
    key.kind != KeyEventKind::Release
        && key.modifiers.contains(KeyModifiers::CONTROL)
        && matches!(key.code, KeyCode::Char('c' | 'q'))
}

impl App {
    fn open_conversation(&self) -> Option<&Conversation> {
        self.open
            .as_ref()
            .and_then(|o| self.conversations.get(o.index))
    }

    /// Shows conversation `index`, its newest page, and marks what it
    /// shows as read.
    async fn open_at(&mut self, index: usize) {
        let Some(conversation) = self.conversations.get(index) else {
            return;
        };
        let mut open = Open {
            index,
            messages: Default::default(),
            complete: false,
            scroll: 0,
        };
        match conversation::page(&self.client, conversation, &self.names, None, PAGE).await {
            Ok(page) => {
                open.complete = page.len() < PAGE;
                for (seq, shown) in page {
                    open.put(seq, shown);
                }
            }
            Err(e) => self.notice = Some(format!("cannot read the history: {e}")),
        }
        self.open = Some(open);
        self.mark_read().await;
    }

    /// Marks the incoming messages on screen as read; the open
    /// conversation has nothing unread any more.
    async fn mark_read(&mut self) {
        let Some(open) = self.open.as_mut() else {
            return;
        };
        let Some(conversation) = self.conversations.get_mut(open.index) else {
            return;
        };
        for seq in open.unread_seqs() {
            // Groups have no read marks in the store: shown is read.
            if let Peer::Contact(_) = conversation.peer
                && let Err(e) = self.client.mark_read(&conversation.key, seq).await
            {
                self.notice = Some(format!("cannot mark messages read: {e}"));
                break;
            }
            open.advance(&[seq], DeliveryState::Read);
        }
        conversation.unread = 0;
        conversation.unread_more = false;
    }

    /// Reads the list again (a new contact wrote, a group changed),
    /// keeping the open conversation open.
    async fn reload_list(&mut self) {
        let open_peer = self.open_conversation().map(|c| c.peer.clone());
        match conversation::list(&self.client).await {
            Ok((mut conversations, names, _)) => {
                // Group counts are kept here, not in the store.
                for c in &mut conversations {
                    if let Peer::Group(_) = c.peer
                        && let Some(old) = self.conversations.iter().find(|o| o.peer == c.peer)
                    {
                        c.unread = old.unread;
                    }
                }
                self.conversations = conversations;
                self.names = names;
            }
            Err(e) => {
                self.notice = Some(e);
                return;
            }
        }
        let index = open_peer.and_then(|p| self.conversations.iter().position(|c| c.peer == p));
        match (index, self.open.as_mut()) {
            (Some(i), Some(open)) => open.index = i,
            (Some(i), None) => self.open_at(i).await,
            (None, _) if !self.conversations.is_empty() => self.open_at(0).await,
            (None, _) => self.open = None,
        }
        self.mark_read().await;
    }

    /// Reads the newest messages of the open conversation again: delivery
    /// states that changed without naming the message (queued messages
    /// went out), a copy sent from another device.
    async fn refresh_tail(&mut self) {
        let Some(open) = self.open.as_mut() else {
            return;
        };
        let Some(conversation) = self.conversations.get(open.index) else {
            return;
        };
        let count = open.unsettled_tail();
        match conversation::page(&self.client, conversation, &self.names, None, count).await {
            Ok(page) => {
                for (seq, shown) in page {
                    open.put(seq, shown);
                }
            }
            Err(e) => self.notice = Some(format!("cannot read the history: {e}")),
        }
        self.mark_read().await;
    }

    /// Loads the page before the oldest message loaded.
    async fn load_older(&mut self) {
        let Some(open) = self.open.as_mut() else {
            return;
        };
        let Some(conversation) = self.conversations.get(open.index) else {
            return;
        };
        if open.complete {
            return;
        }
        let before = open.messages.keys().next().copied();
        match conversation::page(&self.client, conversation, &self.names, before, PAGE).await {
            Ok(page) => {
                open.complete = page.len() < PAGE;
                for (seq, shown) in page {
                    open.put(seq, shown);
                }
            }
            Err(e) => self.notice = Some(format!("cannot read the history: {e}")),
        }
    }

    fn switch_by(&self, step: isize) -> Option<usize> {
        let n = self.conversations.len();
        if n == 0 {
            return None;
        }
        let current = self.open.as_ref().map_or(0, |o| o.index);
        let n = isize::try_from(n).ok()?;
        let next = (isize::try_from(current).ok()? + step).rem_euclid(n);
        usize::try_from(next).ok()
    }

    async fn key(&mut self, key: KeyEvent) {
        if key.kind == KeyEventKind::Release {
            return;
        }
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        match key.code {
            _ if is_quit(&key) => self.quit = true,
            KeyCode::Char('d') if ctrl && self.input.is_empty() => self.quit = true,
            KeyCode::Tab => self.switch(1).await,
            KeyCode::BackTab => self.switch(-1).await,
            KeyCode::Char('n') if ctrl => self.switch(1).await,
            KeyCode::Char('p') if ctrl => self.switch(-1).await,
            KeyCode::Char('a') if ctrl => self.input.home(),
            KeyCode::Char('e') if ctrl => self.input.end(),
            KeyCode::Char('u') if ctrl => self.input.delete_to_start(),
            KeyCode::Char(_) if ctrl => {}
            KeyCode::Char(c) => self.input.insert(c),
            KeyCode::Backspace => self.input.delete_before(),
            KeyCode::Delete => self.input.delete_at(),
            KeyCode::Left => self.input.left(),
            KeyCode::Right => self.input.right(),
            KeyCode::Home => self.input.home(),
            KeyCode::End => self.input.end(),
            KeyCode::Up => self.input.older(),
            KeyCode::Down => self.input.newer(),
            KeyCode::PageUp => self.scroll_up().await,
            KeyCode::PageDown => {
                let page = self.view_height.saturating_sub(1).max(1);
                if let Some(open) = self.open.as_mut() {
                    open.scroll = open.scroll.saturating_sub(page);
                }
            }
            KeyCode::Enter => {
                let line = self.input.take();
                self.enter(&line).await;
            }
            _ => {}
        }
    }

    async fn switch(&mut self, step: isize) {
        if let Some(i) = self.switch_by(step) {
            self.notice = None;
            self.open_at(i).await;
        }
    }

    async fn scroll_up(&mut self) {
        let page = self.view_height.saturating_sub(1).max(1);
        let Some(open) = self.open.as_mut() else {
            return;
        };
        open.scroll += page;
        // Past the oldest row loaded: the page before it, from the store.
        if open.scroll + self.view_height >= self.view_rows && !open.complete {
            self.load_older().await;
        }
    }

    /// A line entered: a command, or a message to the open conversation.
    async fn enter(&mut self, line: &str) {
        if line.trim().is_empty() {
            return;
        }
        let text = match line.strip_prefix('/') {
            // `//text` sends `/text`.
            Some(rest) if rest.starts_with('/') => rest,
            Some(command) => {
                self.command(command.trim()).await;
                return;
            }
            None => line,
        };
        let Some(open) = self.open.as_ref() else {
            self.notice =
                Some("no conversation open: add a contact with `chat add NAME ADDRESS`".into());
            return;
        };
        let Some(conversation) = self.conversations.get(open.index) else {
            return;
        };
        if conversation.left {
            self.notice = Some(format!("you are not in {} any more", conversation.label));
            return;
        }
        self.outgoing = Some(Outgoing {
            peer: conversation.peer.clone(),
            key: conversation.key.clone(),
            text: text.to_owned(),
        });
    }

    /// The result of sending `out`: the message in its conversation with
    /// its first mark, or why it was not sent.
    fn sent(&mut self, out: Outgoing, sent: sotto::Result<sotto::Sent>) {
        let sent = match sent {
            Ok(sent) => sent,
            Err(e) => {
                self.notice = Some(format!("not sent: {e}"));
                return;
            }
        };
        let Some(i) = self.index_of(&out.peer) else {
            return;
        };
        let Some(open) = self.open.as_mut().filter(|o| o.index == i) else {
            // Read from the history when the conversation is opened.
            return;
        };
        let state = match sent.status {
            SendStatus::Accepted => DeliveryState::Sent,
            SendStatus::Failed(reason) => DeliveryState::Failed(reason),
            _ => DeliveryState::Pending,
        };
        open.put(
            sent.seq,
            Shown {
                outgoing: true,
                author: "me".into(),
                state: Some(state),
                body: Ok(out.text),
            },
        );
        open.scroll = 0;
    }

    /// The commands of the input line.
    async fn command(&mut self, command: &str) {
        let (name, args) = command.split_once(' ').unwrap_or((command, ""));
        let args = args.trim();
        match name {
            "send" | "save" | "timer" => {
                let Some(conversation) = self.open_conversation() else {
                    self.notice = Some("no conversation open".into());
                    return;
                };
                let Peer::Contact(_) = &conversation.peer else {
                    self.notice = Some(format!("/{name} works in a conversation with a contact"));
                    return;
                };
                let key = conversation.key.clone();
                self.notice = Some(match name {
                    "send" if args.is_empty() => "usage: /send PATH".into(),
                    "send" => match self.client.send_file(&key, args).await {
                        Ok(_) => format!("sending {args}..."),
                        Err(e) => format!("cannot send {args}: {e}"),
                    },
                    "save" => match args.split_once(' ') {
                        Some((seq, path)) if seq.parse::<u64>().is_ok() => {
                            let seq = seq.parse::<u64>().unwrap_or(0);
                            match self.client.save_attachment(&key, seq, path.trim()).await {
                                Ok(len) => {
                                    format!("saved {} to {}", crate::files::size(len), path.trim())
                                }
                                Err(e) => format!("cannot save #{seq}: {e}"),
                            }
                        }
                        _ => "usage: /save N PATH (N: the message's number)".into(),
                    },
                    _ => match crate::parse_duration(if args.is_empty() { "?" } else { args }) {
                        Ok(timer) => match self.client.set_disappearing_timer(&key, timer).await {
                            Ok(()) => {
                                self.refresh_tail().await;
                                crate::timer_note("you", timer)
                            }
                            Err(e) => format!("cannot set the timer: {e}"),
                        },
                        Err(e) => format!("{e}; usage: /timer 30s|5m|1h|7d|off"),
                    },
                });
            }
            "quit" => self.quit = true,
            "verify" => {
                let Some(conversation) = self.open_conversation() else {
                    self.notice = Some("no conversation open".into());
                    return;
                };
                self.notice = Some(match &conversation.peer {
                    Peer::Contact(_) => match self.client.safety_number(&conversation.key).await {
                        Ok(number) => format!("safety number with {}: {number}", conversation.label),
                        Err(e) => format!("no safety number: {e}"),
                    },
                    Peer::Group(_) => "a group has no safety number: /verify each member in their own conversation".into(),
                });
            }
            _ => {
                self.notice = Some(format!(
                    "unknown command /{name} (commands: /send PATH, /save N PATH, /timer DURATION, /verify, /quit; `//` sends a line starting with `/`)"
                ));
            }
        }
    }

    fn index_of(&self, peer: &Peer) -> Option<usize> {
        self.conversations.iter().position(|c| c.peer == *peer)
    }

    fn is_open(&self, index: usize) -> bool {
        self.open.as_ref().is_some_and(|o| o.index == index)
    }

    async fn client_event(&mut self, event: ClientEvent) {
        match event {
            ClientEvent::Message(m) => {
                let peer = Peer::Contact(m.contact.to_string());
                let Some(i) = self.index_of(&peer) else {
                    // Someone who wrote first: a new conversation.
                    self.reload_list().await;
                    return;
                };
                let label = self.conversations[i].label.clone();
                let body = crate::message_text(&m).into_bytes();
                self.arrived(i, m.seq, label, body).await;
            }
            ClientEvent::GroupMessage(m) => {
                let peer = Peer::Group(sotto::group_id_hex(&m.group));
                let Some(i) = self.index_of(&peer) else {
                    self.reload_list().await;
                    return;
                };
                let me = self.client.address();
                if m.from == me {
                    // Our own, written on another device.
                    if self.is_open(i) {
                        self.refresh_tail().await;
                    }
                    return;
                }
                let author = conversation::name_of(&self.names, &me, &m.from);
                self.arrived(i, m.seq, author, m.body).await;
            }
            ClientEvent::SentFromOtherDevice(m)
                if self
                    .index_of(&Peer::Contact(m.contact.to_string()))
                    .is_some_and(|i| self.is_open(i)) =>
            {
                self.refresh_tail().await;
            }
            ClientEvent::Delivered { contact, seqs } => self.advance(
                &Peer::Contact(contact.to_string()),
                &seqs,
                DeliveryState::Delivered,
            ),
            ClientEvent::Read { contact, seqs } => self.advance(
                &Peer::Contact(contact.to_string()),
                &seqs,
                DeliveryState::Read,
            ),
            ClientEvent::SendFailed {
                contact,
                seq,
                reason,
            } => {
                self.advance(
                    &Peer::Contact(contact.to_string()),
                    &[seq],
                    DeliveryState::Failed(reason),
                );
                self.notice = Some(format!("message #{seq} could not be sent: {reason}"));
            }
            ClientEvent::Connected { .. } => {
                self.link = Link::Connected(self.relay.clone().unwrap_or_default());
                self.refresh_tail().await;
            }
            ClientEvent::Disconnected { reason } => self.link = Link::Offline(reason.to_string()),
            ClientEvent::OutboxFlushed { .. } => self.refresh_tail().await,
            ClientEvent::GroupChanged(_) => self.reload_list().await,
            ClientEvent::IdentityChanged(change) => {
                self.notice = Some(format!(
                    "{} says they have a new address: compare safety numbers, then `chat changes`",
                    change.name
                ));
                self.reload_list().await;
            }
            ClientEvent::Undecryptable {
                reason,
                resend_requested,
                ..
            } => {
                self.notice = Some(if resend_requested {
                    format!("a message could not be decrypted ({reason}); asked for it again")
                } else {
                    format!("a message could not be decrypted ({reason})")
                });
            }
            ClientEvent::PeerCouldNotDecrypt { seq: Some(seq), .. } => {
                self.notice = Some(format!(
                    "message #{seq} could not be decrypted by the contact; sent again"
                ));
            }
            ClientEvent::Unlinked => {
                self.notice = Some("this device was unlinked from its account".into())
            }
            ClientEvent::Error { step, error } => {
                self.notice = Some(format!("{step}: {error} (tried again later)"))
            }
            ClientEvent::FileProgress { done, total, .. } => {
                let percent = (done * 100).checked_div(total).unwrap_or(100);
                self.notice = Some(format!("file: {percent}% of {}", crate::files::size(total)));
            }
            ClientEvent::FileSent { seq, .. } => {
                self.notice = Some(format!("file sent as #{seq}"));
                self.refresh_tail().await;
            }
            ClientEvent::FileReceived { seq, .. } => {
                self.notice = Some(format!(
                    "file #{seq} arrived: /save {seq} PATH writes it out"
                ));
                self.refresh_tail().await;
            }
            ClientEvent::FileFailed { seq, reason, .. } => {
                self.notice = Some(format!("file #{seq} did not arrive: {reason}"));
            }
            ClientEvent::DisappearingTimerChanged { .. } => self.refresh_tail().await,
            ClientEvent::MessagesExpired { contact, seqs } => {
                let open = self
                    .index_of(&Peer::Contact(contact.to_string()))
                    .is_some_and(|i| self.is_open(i));
                if open && let Some(open) = self.open.as_mut() {
                    for seq in &seqs {
                        open.messages.remove(seq);
                    }
                }
            }
            _ => {}
        }
    }

    /// An incoming message for conversation `index`: shown and read if it
    /// is open, counted as unread if not.
    async fn arrived(&mut self, index: usize, seq: u64, author: String, body: Vec<u8>) {
        if self.is_open(index) {
            if let Some(open) = self.open.as_mut() {
                let shown = Shown {
                    outgoing: false,
                    author,
                    state: Some(DeliveryState::Received),
                    body: Ok(String::from_utf8_lossy(&body).into_owned()),
                };
                // Scrolled up to read older messages: the view stays put.
                if open.scroll > 0 {
                    open.scroll += view::rows_of(seq, &shown, self.view_width);
                }
                open.put(seq, shown);
            }
            self.mark_read().await;
        } else if let Some(c) = self.conversations.get_mut(index) {
            c.unread += 1;
        }
    }

    fn advance(&mut self, peer: &Peer, seqs: &[u64], state: DeliveryState) {
        if let Some(i) = self.index_of(peer)
            && let Some(open) = self.open.as_mut()
            && open.index == i
        {
            open.advance(seqs, state);
        }
    }
}

/// SIGINT from outside (raw mode turns Ctrl-C into a key press), SIGTERM
/// and SIGHUP: each ends the interface the normal way, restoring the
/// terminal. Listened for from the start, so none is missed between two
/// turns of the loop.
struct Signals {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    hangup: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> CliResult<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let e = |e: std::io::Error| format!("cannot listen for signals: {e}");
            Ok(Self {
                interrupt: signal(SignalKind::interrupt()).map_err(e)?,
                term: signal(SignalKind::terminate()).map_err(e)?,
                hangup: signal(SignalKind::hangup()).map_err(e)?,
            })
        }
        #[cfg(not(unix))]
        Ok(Self {})
    }

    async fn next(&mut self) {
        #[cfg(unix)]
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.term.recv() => {}
            _ = self.hangup.recv() => {}
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
    }
}
