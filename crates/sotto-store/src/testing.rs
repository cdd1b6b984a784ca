//! Hooks for tests of crash safety. Not part of the supported API.
//!
//! A test arms a [`FaultPoint`]; when an operation reaches it, the
//! operation returns `Error::InjectedFault` there, exactly as if the
//! process had died at that point: an open transaction is rolled back,
//! a committed one stays committed.

/// A point inside `receive`, `receive_batch` or `send` where a fault can
/// be injected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FaultPoint {
    /// After the envelope decrypted, before anything was written.
    ReceiveAfterDecrypt,
    /// After everything was written, before the commit.
    ReceiveBeforeCommit,
    /// After the commit, before the result reaches the caller (who would
    /// then not acknowledge the relay).
    ReceiveAfterCommit,
    /// After the session encrypted, before anything was written.
    SendAfterEncrypt,
    /// After everything was written, before the commit.
    SendBeforeCommit,
    /// After the commit, before the ciphertext reaches the caller.
    SendAfterCommit,
}

/// The armed fault, if any; it fires once.
#[derive(Debug, Default)]
pub(crate) struct Faults {
    armed: Option<FaultPoint>,
}

impl Faults {
    pub(crate) fn arm(&mut self, point: FaultPoint) {
        self.armed = Some(point);
    }

    /// Fails (once) if `point` is armed.
    pub(crate) fn check(&mut self, point: FaultPoint) -> crate::Result<()> {
        if self.armed == Some(point) {
            self.armed = None;
            return Err(crate::Error::InjectedFault(point));
        }
        Ok(())
    }
}

impl crate::Store {
    /// The serialized sessions with `contact` — secret key material —
    /// so tests can check it never reaches the file in the clear.
    #[doc(hidden)]
    pub fn session_state_for_tests(
        &self,
        contact: &str,
    ) -> crate::Result<Option<zeroize::Zeroizing<Vec<u8>>>> {
        self.read(|db| db.session_bytes(&db.contact_lookup(contact)))
    }
}
