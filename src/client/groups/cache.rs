//! Each group's members and name, parsed once.
//!
//! A group's membership state is stored as sotto-core serializes it, and
//! parsing it checks every member's key: milliseconds for a hundred
//! members. Sending and receiving a group message need only the member
//! accounts and the name, so those are kept here per group, with the
//! state bytes they came from: an entry serves as long as the stored state
//! is the same bytes (a comparison, not a parse).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use sotto_core::IdentityKey;
use sotto_core::group::GroupId;
use sotto_store::StoredGroup;

use super::parse_state;
use crate::client::shared::lock;

/// A group's members and name, as of `state`.
pub(crate) struct Members {
    state: Vec<u8>,
    /// The member accounts, sorted by key bytes.
    pub(crate) accounts: Vec<IdentityKey>,
    pub(crate) name: String,
}

impl Members {
    pub(crate) fn contains(&self, account: &IdentityKey) -> bool {
        self.accounts
            .binary_search_by(|a| a.as_bytes().cmp(account.as_bytes()))
            .is_ok()
    }
}

/// The members of every group seen since the client opened.
#[derive(Default, Clone)]
pub(crate) struct MemberCache {
    groups: Arc<Mutex<HashMap<GroupId, Arc<Members>>>>,
}

impl MemberCache {
    /// The members of `stored`, parsed if its state is not the one cached.
    pub(crate) fn members(&self, stored: &StoredGroup) -> sotto_store::Result<Arc<Members>> {
        if let Some(cached) = lock(&self.groups).get(&stored.id)
            && cached.state == stored.state
        {
            return Ok(cached.clone());
        }
        let state = parse_state(stored)?;
        let members = Arc::new(Members {
            state: stored.state.clone(),
            accounts: super::accounts(&state),
            name: state.name().to_owned(),
        });
        lock(&self.groups).insert(stored.id, members.clone());
        Ok(members)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use sotto_core::IdentityKeyPair;
    use sotto_core::group::membership::GroupState;

    #[test]
    fn an_entry_serves_until_the_state_changes() {
        let mut rng = rand::rngs::StdRng::from_seed([4; 32]);
        let alice = IdentityKeyPair::generate(&mut rng);
        let bob = *IdentityKeyPair::generate(&mut rng).public();
        let carol = *IdentityKeyPair::generate(&mut rng).public();
        let (mut state, _) = GroupState::create(&alice, "g", &[bob], &mut rng).unwrap();
        let mut stored = StoredGroup {
            id: state.id(),
            state: state.to_bytes(),
            sender_key: None,
            shared_with: Vec::new(),
            left: false,
        };
        let cache = MemberCache::default();
        let first = cache.members(&stored).unwrap();
        assert!(first.contains(&bob) && first.contains(alice.public()));
        assert!(!first.contains(&carol));
        assert!(Arc::ptr_eq(&first, &cache.members(&stored).unwrap()));
        let add = state.propose_add(&alice, &[carol]).unwrap();
        state.apply(&add, alice.public()).unwrap();
        stored.state = state.to_bytes();
        let after = cache.members(&stored).unwrap();
        assert!(after.contains(&carol));
        assert_eq!(after.accounts.len(), 3);
    }
}
