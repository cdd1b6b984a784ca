//! Conversations as the interface shows them: the list with unread counts,
//! and the open one, loaded from the encrypted history a page at a time.

use std::collections::{BTreeMap, HashMap};

use sotto::store::DeliveryState;
use sotto::{Address, Client, UnreadableRow};

/// Messages read from the history at a time (opening a conversation,
/// scrolling past the oldest loaded).
pub(crate) const PAGE: usize = 50;

/// How far back unread messages are counted when the interface opens.
const UNREAD_SCAN: usize = 500;

/// Whom a conversation is with.
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum Peer {
    /// A contact, by its address (short form).
    Contact(String),
    /// A group, by its id in hex.
    Group(String),
}

pub(crate) struct Conversation {
    pub(crate) peer: Peer,
    /// What the client's methods take: the contact's name (its address
    /// when it has none), or the group's id in hex.
    pub(crate) key: String,
    /// What the list shows.
    pub(crate) label: String,
    /// Incoming messages not read yet.
    pub(crate) unread: usize,
    /// More than `unread` (the count stopped at [`UNREAD_SCAN`]).
    pub(crate) unread_more: bool,
    /// A group this account left: nothing can be sent to it.
    pub(crate) left: bool,
}

/// One message on screen.
pub(crate) struct Shown {
    pub(crate) outgoing: bool,
    /// Who wrote it ("me" for outgoing).
    pub(crate) author: String,
    /// Where it stands: for outgoing messages, the delivery mark.
    pub(crate) state: Option<DeliveryState>,
    pub(crate) body: Result<String, UnreadableRow>,
}

/// The conversation on the right: a window onto its history, the newest
/// end loaded first, older pages as the user scrolls up.
pub(crate) struct Open {
    /// Its index in the list.
    pub(crate) index: usize,
    /// Loaded messages by seq.
    pub(crate) messages: BTreeMap<u64, Shown>,
    /// The oldest message is loaded.
    pub(crate) complete: bool,
    /// Rows scrolled up from the newest.
    pub(crate) scroll: usize,
}

/// The further along of two delivery states: receipts and send results
/// arrive in any order, and a mark never goes back.
pub(crate) fn further(a: Option<DeliveryState>, b: Option<DeliveryState>) -> Option<DeliveryState> {
    fn rank(s: &Option<DeliveryState>) -> u8 {
        match s {
            None => 0,
            Some(DeliveryState::Pending) => 1,
            Some(DeliveryState::Sent) => 2,
            Some(DeliveryState::Received) => 3,
            Some(DeliveryState::Delivered) => 4,
            Some(DeliveryState::Read) => 5,
            Some(DeliveryState::Failed(_)) => 6,
            Some(_) => 0,
        }
    }
    if rank(&b) > rank(&a) { b } else { a }
}

/// Names of the people in this profile's conversations, by address.
pub(crate) type Names = HashMap<Address, String>;

pub(crate) fn name_of(names: &Names, me: &Address, who: &Address) -> String {
    if who == me {
        return "me".to_owned();
    }
    names
        .get(who)
        .filter(|n| !n.is_empty())
        .cloned()
        .unwrap_or_else(|| who.to_string())
}

/// Every conversation: contacts, then groups, each by name. Contact rows
/// that cannot be read are left out of the list (`chat check` reports
/// them); their count is returned.
pub(crate) async fn list(client: &Client) -> Result<(Vec<Conversation>, Names, usize), String> {
    let s = |e: sotto::Error| e.to_string();
    let mut names = Names::new();
    let mut contacts = Vec::new();
    let mut unreadable = 0;
    for c in client.contacts().await.map_err(s)? {
        let Ok(c) = c else {
            unreadable += 1;
            continue;
        };
        names.insert(c.address, c.name.clone());
        let key = if c.name.is_empty() {
            c.address.to_string()
        } else {
            c.name.clone()
        };
        contacts.push(Conversation {
            peer: Peer::Contact(c.address.to_string()),
            label: key.clone(),
            key,
            unread: 0,
            unread_more: false,
            left: false,
        });
    }
    contacts.sort_by(|a, b| a.label.cmp(&b.label));
    for c in &mut contacts {
        (c.unread, c.unread_more) = count_unread(client, &c.key).await.map_err(s)?;
    }
    let mut groups: Vec<Conversation> = client
        .groups()
        .await
        .map_err(s)?
        .into_iter()
        .map(|g| Conversation {
            peer: Peer::Group(sotto::group_id_hex(&g.id)),
            key: sotto::group_id_hex(&g.id),
            label: format!("#{}", g.name),
            unread: 0,
            unread_more: false,
            left: g.left,
        })
        .collect();
    groups.sort_by(|a, b| a.label.cmp(&b.label));
    contacts.extend(groups);
    Ok((contacts, names, unreadable))
}

/// The incoming messages after the newest one marked read (the interface
/// marks what it shows as read), counting back at most [`UNREAD_SCAN`].
async fn count_unread(client: &Client, contact: &str) -> sotto::Result<(usize, bool)> {
    let mut count = 0;
    let mut before = None;
    loop {
        let page = client.history(contact, before, PAGE).await?;
        for item in &page {
            match item.state {
                Some(DeliveryState::Read) if !item.outgoing => return Ok((count, false)),
                Some(DeliveryState::Received) => count += 1,
                _ => {}
            }
        }
        match page.last() {
            _ if count >= UNREAD_SCAN => return Ok((UNREAD_SCAN, true)),
            Some(last) if page.len() == PAGE => before = Some(last.seq),
            _ => return Ok((count, false)),
        }
    }
}

/// A page of `conversation`'s history, older than `before` (the newest
/// when `None`), newest first.
pub(crate) async fn page(
    client: &Client,
    conversation: &Conversation,
    names: &Names,
    before: Option<u64>,
    limit: usize,
) -> sotto::Result<Vec<(u64, Shown)>> {
    let lossy = |b: Vec<u8>| String::from_utf8_lossy(&b).into_owned();
    Ok(match &conversation.peer {
        Peer::Contact(_) => client
            .history(&conversation.key, before, limit)
            .await?
            .into_iter()
            .map(|item| {
                let author = if item.outgoing {
                    "me".to_owned()
                } else {
                    conversation.label.clone()
                };
                let body = match (&item.event, &item.attachment) {
                    (Some(sotto::ConversationEvent::TimerChanged { seconds }), _) => {
                        let who = if item.outgoing {
                            "you"
                        } else {
                            conversation.label.as_str()
                        };
                        let timer = (*seconds > 0)
                            .then(|| std::time::Duration::from_secs(u64::from(*seconds)));
                        Ok(format!("({})", crate::timer_note(who, timer)))
                    }
                    (_, Some(attachment)) => Ok(crate::files::describe(attachment)),
                    _ => item.body.map(lossy),
                };
                // An event (a timer change) has no author and no mark.
                let (author, state) = if item.event.is_some() {
                    (String::new(), None)
                } else {
                    (author, item.state)
                };
                let shown = Shown {
                    outgoing: item.outgoing,
                    author,
                    state,
                    body,
                };
                (item.seq, shown)
            })
            .collect(),
        Peer::Group(_) => {
            let me = client.address();
            client
                .group_history(&conversation.key, before, limit)
                .await?
                .into_iter()
                .map(|item| {
                    let author = match (item.outgoing, item.author) {
                        (true, _) => "me".to_owned(),
                        (false, Some(a)) => name_of(names, &me, &a),
                        (false, None) => "?".to_owned(),
                    };
                    let shown = Shown {
                        outgoing: item.outgoing,
                        author,
                        state: item.state,
                        body: item.body.map(lossy),
                    };
                    (item.seq, shown)
                })
                .collect()
        }
    })
}

impl Open {
    /// Puts a message in (or updates it), keeping the further delivery
    /// state of the two.
    pub(crate) fn put(&mut self, seq: u64, mut shown: Shown) {
        if let Some(old) = self.messages.get(&seq) {
            shown.state = further(old.state, shown.state);
        }
        self.messages.insert(seq, shown);
    }

    /// Moves the delivery mark of `seqs` on to `state`.
    pub(crate) fn advance(&mut self, seqs: &[u64], state: DeliveryState) {
        for seq in seqs {
            if let Some(m) = self.messages.get_mut(seq) {
                m.state = further(m.state, Some(state));
            }
        }
    }

    /// How many of the newest messages to read again to catch up with
    /// delivery states that changed without saying which message (a
    /// queued message went out): from the oldest one still queued or
    /// sent to the newest, at least a few.
    pub(crate) fn unsettled_tail(&self) -> usize {
        let unsettled = self
            .messages
            .iter()
            .find(|(_, m)| {
                m.outgoing && matches!(m.state, Some(DeliveryState::Pending | DeliveryState::Sent))
            })
            .map(|(seq, _)| *seq);
        let tail = match unsettled {
            Some(seq) => self.messages.range(seq..).count(),
            None => 0,
        };
        tail.max(10)
    }

    /// Incoming messages shown but not marked read yet.
    pub(crate) fn unread_seqs(&self) -> Vec<u64> {
        self.messages
            .iter()
            .filter(|(_, m)| !m.outgoing && m.state == Some(DeliveryState::Received))
            .map(|(seq, _)| *seq)
            .collect()
    }
}
