//! A contact's unidentified-access key (docs/storage.md, contact record
//! flag bit 5): sealed in the contact's record, set only for the identity
//! pinned to that contact, kept across reopening, never shown by `Debug`.
#![cfg(test)]

mod common;

use common::{files, options, read};
use sotto_store::sotto_core::{AccessKey, IdentityKeyPair};
use sotto_store::{Error, Store};

const PASS: &[u8] = b"access key test passphrase";

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn a_contacts_access_key_is_set_only_for_its_pinned_identity_and_kept_sealed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let carol = IdentityKeyPair::from_seed(&[3; 32]);
    let mallory = IdentityKeyPair::from_seed(&[4; 32]);
    let key = AccessKey::derive(&carol).unwrap();
    // Recognisable bytes, to look for in the file.
    let marker = AccessKey::from_bytes(*b"ACCESS-KEY-MARK!");
    {
        let mut store = Store::create(&path, PASS, &options()).unwrap();
        store
            .add_contact("carol", "Carol", Some(carol.public()))
            .unwrap();
        store.add_contact("unpinned", "Nobody yet", None).unwrap();
        assert_eq!(store.contact("carol").unwrap().unwrap().access_key, None);

        // Someone else cannot set Carol's key, nor anyone the key of a
        // contact with no pinned identity.
        assert!(matches!(
            store.set_contact_access_key("carol", mallory.public(), &marker),
            Err(Error::IdentityMismatch)
        ));
        assert!(matches!(
            store.set_contact_access_key("unpinned", carol.public(), &key),
            Err(Error::IdentityMismatch)
        ));
        assert!(matches!(
            store.set_contact_access_key("dave", carol.public(), &key),
            Err(Error::UnknownContact)
        ));
        assert_eq!(store.contact("carol").unwrap().unwrap().access_key, None);
        assert_eq!(store.contact("unpinned").unwrap().unwrap().access_key, None);

        // Carol can, once; the same key again changes nothing.
        assert!(
            store
                .set_contact_access_key("carol", carol.public(), &key)
                .unwrap()
        );
        assert!(
            !store
                .set_contact_access_key("carol", carol.public(), &key)
                .unwrap()
        );
        assert!(
            store
                .set_contact_access_key("carol", carol.public(), &marker)
                .unwrap()
        );
        let contact = store.contact("carol").unwrap().unwrap();
        assert_eq!(contact.access_key, Some(marker.clone()));
        let shown = format!("{contact:?} {contact:#?}");
        assert!(shown.contains("has_access_key: true"), "{shown}");
        assert!(!shown.contains("ACCESS-KEY-MARK"), "{shown}");
        assert!(!shown.contains(&hex::encode(marker.as_bytes())), "{shown}");

        // The other fields of the record are untouched.
        assert_eq!(contact.name, "Carol");
        assert_eq!(contact.identity_key, Some(*carol.public()));
        store.set_contact_verified("carol", true).unwrap();
        assert_eq!(
            store.contact("carol").unwrap().unwrap().access_key,
            Some(marker.clone())
        );
        store.checkpoint().unwrap();
    }
    // Sealed: the key's bytes are nowhere in the files.
    for file in files(&path) {
        assert!(
            !contains(&read(&file), marker.as_bytes()),
            "{}",
            file.display()
        );
    }
    // Kept across reopening.
    let store = Store::open(&path, PASS, &options()).unwrap();
    let contact = store.contact("carol").unwrap().unwrap();
    assert_eq!(contact.access_key, Some(marker));
    assert!(contact.verified);
}
