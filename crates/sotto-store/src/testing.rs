//! Hooks for tests (feature `test-hooks`, off by default). Not part of the
//! supported API.
//!
//! A crash-safety test arms a [`FaultPoint`] with
//! [`Store::inject_fault`](crate::Store::inject_fault); when an operation
//! reaches it, the operation returns `Error::InjectedFault` there, exactly
//! as if the process had died at that point: an open transaction is rolled
//! back, a committed one stays committed.
//!
//! Without the feature the fault points are still named where they are
//! (so the code reads the same), but none can be armed and checking one
//! does nothing.

/// A point inside `receive`, `receive_batch`, `send` or
/// `apply_history_chunk` where a fault can be injected.
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
    /// Inside a history transfer chunk, right after a conversation was
    /// merged (the rows already there moved after the transferred ones),
    /// before the rest of the chunk was applied.
    TransferAfterMerge,
    /// After a history transfer chunk was applied and its progress
    /// recorded, before the commit.
    TransferBeforeCommit,
    /// After the chunk's commit, before its progress reaches the caller
    /// (who would then not acknowledge the chunk).
    TransferAfterCommit,
}

/// The armed fault, if any; it fires once.
#[derive(Debug, Default)]
pub(crate) struct Faults {
    #[cfg(feature = "test-hooks")]
    armed: Option<FaultPoint>,
}

impl Faults {
    /// Fails (once) if `point` is armed.
    #[cfg(feature = "test-hooks")]
    pub(crate) fn check(&mut self, point: FaultPoint) -> crate::Result<()> {
        if self.armed == Some(point) {
            self.armed = None;
            return Err(crate::Error::InjectedFault(point));
        }
        Ok(())
    }

    /// Nothing can be armed without the feature.
    #[cfg(not(feature = "test-hooks"))]
    #[inline]
    pub(crate) fn check(&mut self, _point: FaultPoint) -> crate::Result<()> {
        Ok(())
    }
}

#[cfg(feature = "test-hooks")]
impl crate::Store {
    /// Arms a fault for crash-safety tests; see [`FaultPoint`].
    pub fn inject_fault(&mut self, point: FaultPoint) {
        self.faults.armed = Some(point);
    }

    /// The serialized sessions with `contact` — secret key material —
    /// so tests can check it never reaches the file in the clear.
    pub fn session_state_for_tests(
        &self,
        contact: &str,
    ) -> crate::Result<Option<zeroize::Zeroizing<Vec<u8>>>> {
        self.read(|db| {
            let set = db.sessions(&db.contact_lookup(contact))?;
            Ok(set.has_session().then(|| set.to_bytes()))
        })
    }
}
