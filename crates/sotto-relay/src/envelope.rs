//! Envelopes: the opaque bytes the relay queues, and their ids.

use rand::TryRng;

/// A sender-chosen id that makes a retried `Send` idempotent: while an
/// envelope with the same `(recipient, message id)` is still queued, the
/// relay stores nothing new and answers with the queued envelope's id.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct MessageId(pub [u8; 16]);

impl MessageId {
    /// A fresh random id from the operating system.
    pub fn random() -> Result<Self, rand::rngs::SysError> {
        let mut id = [0u8; 16];
        rand::rngs::SysRng.try_fill_bytes(&mut id)?;
        Ok(Self(id))
    }
}

/// A queued envelope as delivered to its recipient.
///
/// `id` is assigned by the relay, increases in the order envelopes were
/// stored in a mailbox, and is what the recipient acknowledges. `payload` is
/// exactly the bytes the sender sent; the relay never interprets them.
#[derive(Clone, PartialEq, Eq)]
pub struct Envelope {
    /// The relay's id of this envelope.
    pub id: u64,
    /// The opaque ciphertext.
    pub payload: Vec<u8>,
}

impl Envelope {
    /// Bytes this envelope takes in a frame: `u64 id || u32 len || payload`.
    pub const OVERHEAD: usize = 12;

    /// Size of this envelope's encoding.
    pub fn encoded_len(&self) -> usize {
        Self::OVERHEAD + self.payload.len()
    }
}

/// One page of queued envelopes: what the relay answers to a `Fetch`
/// ([`RelayClient::fetch`](crate::RelayClient::fetch)), and what a mailbox
/// store returns for it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FetchedPage {
    /// Envelopes, oldest first.
    pub envelopes: Vec<Envelope>,
    /// Further envelopes exist after the last one returned.
    pub more: bool,
}

impl core::fmt::Debug for Envelope {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // Never print the payload.
        f.debug_struct("Envelope")
            .field("id", &self.id)
            .field("len", &self.payload.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_does_not_print_the_payload() {
        let e = Envelope {
            id: 7,
            payload: b"secret-bytes".to_vec(),
        };
        let s = format!("{e:?}");
        assert!(s.contains("id: 7") && s.contains("len: 12"));
        assert!(!s.contains("secret"));
    }

    #[test]
    fn random_message_ids_differ() {
        assert_ne!(MessageId::random().unwrap(), MessageId::random().unwrap());
    }
}
