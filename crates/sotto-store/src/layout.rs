//! How messages lie in the `messages` table (schema version 9,
//! docs/storage.md section 3, "Message rows").
//!
//! `messages` is a rowid table, `(id INTEGER PRIMARY KEY, sealed BLOB)`.
//! A message's sealed value is cut into parts of at most [`PART_LEN`]
//! bytes, in order, each a row whose id is
//!
//! ```text
//! id = conversation number (19 bits) || seq (28 bits) || part (16 bits)
//! ```
//!
//! so a conversation's rows are one range of ids, a message's parts are
//! consecutive, and a history page is one range scan, as in the clustered
//! `WITHOUT ROWID` table this replaces. The conversation number is
//! `conversations.num`, drawn at random when the conversation is made.
//!
//! Why parts: SQLite stores a row either whole in a b-tree page or spilled
//! into overflow pages, and both waste space for rows of about a quarter
//! page and more (a 1 KiB row of the old table took a whole 4 KiB overflow
//! page besides its 0.5 KiB in the b-tree; rows of 2 KiB fit one to a
//! page in a rowid table). Eight parts of [`PART_LEN`] bytes fill a
//! 4096-byte page exactly, and a page holding the odd last parts wastes
//! at most one part's size. The parts are a function of the sealed
//! value's length only, which the old row showed as well: the layout
//! reveals nothing the padding did not.
//!
//! The sealed value stays bound to `(conversation lookup, seq)` (section
//! 4): its parts put together must open for that place, so a part moved,
//! dropped or swapped makes the whole message [`Error::Corrupt`].

use crate::error::{Error, Result, Row};

/// The longest part of a sealed message value: with the row's id, its
/// lengths and its cell pointer (511 bytes in all), eight such rows fill
/// a 4096-byte page exactly (measured with `dbstat`: no byte unused; 495
/// bytes would make it seven).
pub(crate) const PART_LEN: usize = 494;

/// The page size new stores are created with; [`PART_LEN`] is chosen for
/// it. (SQLite's default, which every older store has.)
pub(crate) const PAGE_SIZE: u32 = 4096;

const NUM_BITS: u32 = 19;
const SEQ_BITS: u32 = 28;
const PART_BITS: u32 = 16;

/// The largest conversation number (0 is never used, nor the highest
/// 19-bit number, whose range would end at 2^63).
pub(crate) const MAX_NUM: u32 = (1 << NUM_BITS) - 2;

/// The largest seq a message can have: 268 435 455 messages in one
/// conversation, deleted ones included.
pub(crate) const MAX_SEQ: u64 = (1 << SEQ_BITS) - 1;

/// The most parts one message can have (a sealed value of 32 MiB; the
/// protocol's largest body pads to 17 MB).
const MAX_PARTS: usize = 1 << PART_BITS;

/// The id of part `part` of message `seq` in conversation `num`, all in
/// range.
fn id(num: u32, seq: u64, part: usize) -> i64 {
    // num < 2^19, seq < 2^28, part < 2^16: below 2^63.
    let id = (u64::from(num) << (SEQ_BITS + PART_BITS)) | (seq << PART_BITS) | part as u64;
    id as i64
}

/// Whether `num` is a conversation number.
pub(crate) fn valid_num(num: i64) -> Option<u32> {
    u32::try_from(num)
        .ok()
        .filter(|&n| (1..=MAX_NUM).contains(&n))
}

/// The ids of message `seq`'s rows: `start..end`. `None` for a seq no
/// message can have (0, or above [`MAX_SEQ`]).
pub(crate) fn message_span(num: u32, seq: u64) -> Option<(i64, i64)> {
    if seq == 0 || seq > MAX_SEQ || num > MAX_NUM {
        return None;
    }
    Some((id(num, seq, 0), id(num, seq, 0) + (1 << PART_BITS)))
}

/// As [`message_span`], for writing: a seq out of range is an error.
pub(crate) fn writable_span(num: u32, seq: u64) -> Result<(i64, i64)> {
    message_span(num, seq).ok_or(Error::LayoutLimit {
        what: "message seq",
        value: seq,
        max: MAX_SEQ,
    })
}

/// The ids of the rows of messages `1..before` (`before` is capped at
/// the largest seq plus one).
pub(crate) fn messages_before(num: u32, before: u64) -> (i64, i64) {
    let before = before.clamp(1, MAX_SEQ + 1);
    (
        id(num, 1, 0),
        id(num, 0, 0) + ((before as i64) << PART_BITS),
    )
}

/// The ids of every row of conversation `num`.
pub(crate) fn conversation_span(num: u32) -> (i64, i64) {
    messages_before(num, MAX_SEQ + 1)
}

/// The rows (`id` offset from part 0, bytes) a sealed value is stored as.
pub(crate) fn parts(sealed: &[u8]) -> Result<impl Iterator<Item = (i64, &[u8])>> {
    let count = sealed.len().div_ceil(PART_LEN).max(1);
    if count > MAX_PARTS {
        return Err(Error::LayoutLimit {
            what: "sealed message bytes",
            value: sealed.len() as u64,
            max: (MAX_PARTS * PART_LEN) as u64,
        });
    }
    let empty: &[u8] = &[];
    let chunks = sealed.chunks(PART_LEN);
    Ok(chunks
        .chain(sealed.is_empty().then_some(empty))
        .enumerate()
        .map(|(i, chunk)| (i as i64, chunk)))
}

/// The seq and part of a row id.
fn split(id: i64) -> (u64, u64) {
    let id = id as u64;
    ((id >> PART_BITS) & MAX_SEQ, id & ((1 << PART_BITS) - 1))
}

/// Puts messages back together from their rows, read in id order
/// (ascending, or descending for newest first): each
/// [`push`](Self::push) returns the message the row before it completed,
/// [`finish`](Self::finish) the last one. A message's parts must be
/// `0, 1, ..., n` with none missing; one that is not, or whose value is
/// not a blob, is [`Error::Corrupt`].
pub(crate) struct Assembler {
    descending: bool,
    current: Option<Partial>,
}

struct Partial {
    seq: u64,
    /// The part the next row of this message must be.
    next: Option<u64>,
    parts: Vec<Vec<u8>>,
    broken: bool,
}

/// One message put back together: its seq and its sealed value.
pub(crate) type Assembled = (u64, Result<Vec<u8>>);

impl Assembler {
    pub(crate) fn new(descending: bool) -> Self {
        Self {
            descending,
            current: None,
        }
    }

    /// Takes the next row: its id, and its value (`None` if not a blob).
    pub(crate) fn push(&mut self, id: i64, value: Option<&[u8]>) -> Option<Assembled> {
        let (seq, part) = split(id);
        let following = self.following(part);
        let done = match &mut self.current {
            Some(current) if current.seq == seq => {
                if current.next != Some(part) {
                    current.broken = true;
                }
                current.next = following;
                match value {
                    Some(v) => current.parts.push(v.to_vec()),
                    None => current.broken = true,
                }
                return None;
            }
            _ => self.current.take(),
        };
        let first_ok = if self.descending { true } else { part == 0 };
        self.current = Some(Partial {
            seq,
            next: following,
            parts: value.map(|v| vec![v.to_vec()]).unwrap_or_default(),
            broken: !first_ok || value.is_none(),
        });
        done.map(|p| self.complete(p))
    }

    /// The message of the last row, if any.
    pub(crate) fn finish(&mut self) -> Option<Assembled> {
        let last = self.current.take()?;
        Some(self.complete(last))
    }

    fn following(&self, part: u64) -> Option<u64> {
        if self.descending {
            part.checked_sub(1)
        } else {
            part.checked_add(1)
        }
    }

    fn complete(&self, mut partial: Partial) -> Assembled {
        // Descending, the last row read must have been part 0.
        if self.descending {
            if partial.next.is_some() {
                partial.broken = true;
            }
            partial.parts.reverse();
        }
        if partial.broken {
            return (
                partial.seq,
                Err(Error::Corrupt {
                    table: "messages",
                    row: Row::Seq(partial.seq),
                }),
            );
        }
        (partial.seq, Ok(partial.parts.concat()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(num: u32, seq: u64, sealed: &[u8]) -> Vec<(i64, Vec<u8>)> {
        let (start, _) = message_span(num, seq).unwrap();
        parts(sealed)
            .unwrap()
            .map(|(i, p)| (start + i, p.to_vec()))
            .collect()
    }

    fn assemble(rows: &[(i64, Vec<u8>)], descending: bool) -> Vec<Assembled> {
        let mut a = Assembler::new(descending);
        let mut out: Vec<Assembled> = rows
            .iter()
            .filter_map(|(id, v)| a.push(*id, Some(v)))
            .collect();
        out.extend(a.finish());
        out
    }

    fn ok(out: &[Assembled]) -> Vec<(u64, Vec<u8>)> {
        out.iter()
            .map(|(s, r)| (*s, r.as_ref().unwrap().clone()))
            .collect()
    }

    #[test]
    fn values_of_every_length_come_back_whole_in_both_orders() {
        let lens = [
            0,
            1,
            PART_LEN - 1,
            PART_LEN,
            PART_LEN + 1,
            3 * PART_LEN,
            70_000,
        ];
        let mut all = Vec::new();
        let mut want = Vec::new();
        for (i, len) in lens.iter().enumerate() {
            let seq = i as u64 + 1;
            let value: Vec<u8> = (0..*len).map(|b| (b % 251) as u8 ^ seq as u8).collect();
            all.extend(rows(7, seq, &value));
            want.push((seq, value));
        }
        assert_eq!(ok(&assemble(&all, false)), want);
        all.reverse();
        want.reverse();
        assert_eq!(ok(&assemble(&all, true)), want);
    }

    #[test]
    fn a_missing_or_misplaced_part_makes_only_its_message_corrupt_or_short() {
        let big = vec![9u8; 3 * PART_LEN];
        let mut all = rows(3, 1, b"first");
        let mut second = rows(3, 2, &big);
        all.extend(rows(3, 3, b"third"));
        // The first or a middle part missing. (Without its last part a
        // value comes back short, and its seal does not open.)
        for broken in 0..2 {
            let mut these = all.clone();
            let mut parts = second.clone();
            parts.remove(broken);
            these.splice(1..1, parts);
            for descending in [false, true] {
                let mut input = these.clone();
                if descending {
                    input.reverse();
                }
                let mut out = assemble(&input, descending);
                out.sort_by_key(|(s, _)| *s);
                assert_eq!(out.len(), 3);
                assert!(out[0].1.is_ok() && out[2].1.is_ok());
                assert!(matches!(
                    out[1].1,
                    Err(Error::Corrupt {
                        table: "messages",
                        row: Row::Seq(2)
                    })
                ));
            }
        }
        let mut short = all.clone();
        let mut parts = second.clone();
        parts.pop();
        short.splice(1..1, parts);
        assert_eq!(
            assemble(&short, false)[1].1.as_ref().unwrap().len(),
            2 * PART_LEN
        );
        // Parts out of order (a reader that lost its place).
        second.swap(0, 1);
        assert!(assemble(&second, false)[0].1.is_err());
        assert!(assemble(&second, true)[0].1.is_err());
    }

    #[test]
    fn ids_keep_conversations_and_seqs_apart_and_in_order() {
        assert_eq!(message_span(1, 0), None);
        assert_eq!(message_span(1, MAX_SEQ + 1), None);
        let (a, b) = message_span(MAX_NUM, MAX_SEQ).unwrap();
        assert!(a > 0 && b > a);
        let (_, end) = message_span(5, 9).unwrap();
        assert_eq!(message_span(5, 10).unwrap().0, end);
        let (lo, hi) = conversation_span(5);
        assert_eq!(lo, message_span(5, 1).unwrap().0);
        assert_eq!(hi, message_span(6, 1).unwrap().0 - (1 << PART_BITS));
        assert_eq!(messages_before(5, 10), (lo, end));
        assert_eq!(messages_before(5, u64::MAX), (lo, hi));
        assert_eq!(messages_before(5, 0).0, messages_before(5, 0).1);
        assert!(matches!(
            writable_span(5, MAX_SEQ + 1),
            Err(Error::LayoutLimit { .. })
        ));
        assert_eq!(valid_num(0), None);
        assert_eq!(valid_num(i64::from(MAX_NUM) + 1), None);
        assert_eq!(valid_num(42), Some(42));
    }

    #[test]
    fn a_sealed_value_too_large_for_the_parts_is_refused() {
        let huge = vec![0u8; MAX_PARTS * PART_LEN + 1];
        assert!(matches!(parts(&huge), Err(Error::LayoutLimit { .. })));
        assert_eq!(parts(&[]).unwrap().count(), 1);
    }
}
