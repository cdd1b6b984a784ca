//! Group controls: what a device tells another through their pairwise
//! session about a group (docs/groups.md, "Controls").
//!
//! ```text
//! GroupControl = 0x01 (format) || kind(1) || body
//! kind 0x01 sender key: a sotto-core SenderKeyDistribution (105 bytes)
//! kind 0x02 change:     u32be(len) || a sotto-core SignedChange || intros
//! kind 0x03 join:       u32be(len) || a sotto-core GroupState || intros
//! kind 0x04 timer:      u32be(seconds, 0 = off) || u64be(set_at ms): the
//!                       disappearing messages timer of the 1:1
//!                       conversation between the two accounts
//!                       (docs/client.md, "Disappearing messages")
//! intros = u16be(n) || n × (account key(32) || access key(16))
//! ```
//!
//! A change goes to every member (the removed ones included, so they
//! learn it), a join (the group's state after the change that added
//! them) to each added member. The introductions name the other members'
//! accounts with the access key to present to the relay when writing to
//! them: a member may not have every other member as a contact.

use sotto_core::access::ACCESS_KEY_LEN;
use sotto_core::{AccessKey, IdentityKey};
use zeroize::Zeroizing;

const FORMAT: u8 = 0x01;
const KIND_SENDER_KEY: u8 = 0x01;
const KIND_CHANGE: u8 = 0x02;
const KIND_JOIN: u8 = 0x03;
const KIND_TIMER: u8 = 0x04;

/// One member's account and the access key to write to it.
#[derive(Clone)]
pub(crate) struct Intro {
    pub(crate) account: IdentityKey,
    pub(crate) access_key: AccessKey,
}

/// A decoded control.
pub(crate) enum Control {
    SenderKey(Zeroizing<Vec<u8>>),
    Change { change: Vec<u8>, intros: Vec<Intro> },
    Join { state: Vec<u8>, intros: Vec<Intro> },
    Timer { seconds: u32, set_at: u64 },
}

pub(crate) fn sender_key(distribution: &[u8]) -> Zeroizing<Vec<u8>> {
    let mut out = Zeroizing::new(Vec::with_capacity(2 + distribution.len()));
    out.extend_from_slice(&[FORMAT, KIND_SENDER_KEY]);
    out.extend_from_slice(distribution);
    out
}

pub(crate) fn timer(seconds: u32, set_at: u64) -> Zeroizing<Vec<u8>> {
    let mut out = Zeroizing::new(Vec::with_capacity(14));
    out.extend_from_slice(&[FORMAT, KIND_TIMER]);
    out.extend_from_slice(&seconds.to_be_bytes());
    out.extend_from_slice(&set_at.to_be_bytes());
    out
}

pub(crate) fn change(change: &[u8], intros: &[Intro]) -> Zeroizing<Vec<u8>> {
    with_intros(KIND_CHANGE, change, intros)
}

pub(crate) fn join(state: &[u8], intros: &[Intro]) -> Zeroizing<Vec<u8>> {
    with_intros(KIND_JOIN, state, intros)
}

fn with_intros(kind: u8, inner: &[u8], intros: &[Intro]) -> Zeroizing<Vec<u8>> {
    // A group has at most 1000 members, a change or state a few dozen KiB.
    let intros = &intros[..intros.len().min(usize::from(u16::MAX))];
    let mut out = Zeroizing::new(Vec::with_capacity(
        8 + inner.len() + intros.len() * (32 + ACCESS_KEY_LEN),
    ));
    out.extend_from_slice(&[FORMAT, kind]);
    out.extend_from_slice(&u32::try_from(inner.len()).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(inner);
    out.extend_from_slice(&(intros.len() as u16).to_be_bytes());
    for intro in intros {
        out.extend_from_slice(intro.account.as_bytes());
        out.extend_from_slice(intro.access_key.as_bytes());
    }
    out
}

/// Parses a control; `None` for anything that is not exactly one.
pub(crate) fn parse(bytes: &[u8]) -> Option<Control> {
    let (&format, rest) = bytes.split_first()?;
    let (&kind, body) = rest.split_first()?;
    if format != FORMAT {
        return None;
    }
    match kind {
        KIND_SENDER_KEY => Some(Control::SenderKey(Zeroizing::new(body.to_vec()))),
        KIND_TIMER => {
            let (seconds, rest) = body.split_first_chunk::<4>()?;
            let set_at: [u8; 8] = rest.try_into().ok()?;
            Some(Control::Timer {
                seconds: u32::from_be_bytes(*seconds),
                set_at: u64::from_be_bytes(set_at),
            })
        }
        KIND_CHANGE | KIND_JOIN => {
            let (len, rest) = body.split_first_chunk::<4>()?;
            let len = usize::try_from(u32::from_be_bytes(*len)).ok()?;
            if len > rest.len() {
                return None;
            }
            let (inner, rest) = rest.split_at(len);
            let (n, mut rest) = rest.split_first_chunk::<2>()?;
            let n = usize::from(u16::from_be_bytes(*n));
            if rest.len() != n * (32 + ACCESS_KEY_LEN) {
                return None;
            }
            let mut intros = Vec::with_capacity(n);
            for _ in 0..n {
                let (account, tail) = rest.split_first_chunk::<32>()?;
                let (key, tail) = tail.split_first_chunk::<ACCESS_KEY_LEN>()?;
                intros.push(Intro {
                    account: IdentityKey::from_bytes(account).ok()?,
                    access_key: AccessKey::from_bytes(*key),
                });
                rest = tail;
            }
            Some(if kind == KIND_CHANGE {
                Control::Change {
                    change: inner.to_vec(),
                    intros,
                }
            } else {
                Control::Join {
                    state: inner.to_vec(),
                    intros,
                }
            })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use sotto_core::IdentityKeyPair;

    fn intro(seed: u8) -> Intro {
        let mut rng = rand::rngs::StdRng::from_seed([seed; 32]);
        Intro {
            account: *IdentityKeyPair::generate(&mut rng).public(),
            access_key: AccessKey::from_bytes([seed; ACCESS_KEY_LEN]),
        }
    }

    #[test]
    fn a_timer_round_trips_and_every_cut_or_extension_is_refused() {
        let bytes = timer(86_400, 1_700_000_000_123);
        assert!(matches!(
            parse(&bytes),
            Some(Control::Timer {
                seconds: 86_400,
                set_at: 1_700_000_000_123
            })
        ));
        for cut in 0..bytes.len() {
            assert!(parse(&bytes[..cut]).is_none());
        }
        let mut longer = bytes.to_vec();
        longer.push(0);
        assert!(parse(&longer).is_none());
    }

    #[test]
    fn controls_round_trip_and_every_cut_is_refused() {
        let intros = vec![intro(1), intro(2)];
        let bytes = change(b"a signed change", &intros);
        let Some(Control::Change {
            change,
            intros: back,
        }) = parse(&bytes)
        else {
            panic!("not a change");
        };
        assert_eq!(change, b"a signed change");
        assert_eq!(back.len(), 2);
        assert_eq!(back[1].account, intros[1].account);
        assert_eq!(
            back[1].access_key.as_bytes(),
            intros[1].access_key.as_bytes()
        );
        for cut in 0..bytes.len() {
            assert!(
                !matches!(parse(&bytes[..cut]), Some(Control::Change { .. })),
                "cut at {cut}"
            );
        }
        let mut longer = bytes.to_vec();
        longer.push(0);
        assert!(parse(&longer).is_none());
        assert!(matches!(
            parse(&join(b"state", &[])),
            Some(Control::Join { .. })
        ));
        assert!(matches!(
            parse(&sender_key(b"distribution")),
            Some(Control::SenderKey(_))
        ));
        assert!(parse(&[0x02, KIND_SENDER_KEY]).is_none());
        assert!(parse(&[FORMAT, 0x09]).is_none());
    }
}
