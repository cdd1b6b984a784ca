//! The bindings' Rust surface, without a relay: what a foreign caller gets
//! for the usual mistakes is a typed error, never a panic.
#![cfg(test)]

use sotto_ffi::{Client, ClientOptions, SottoError};

fn fast() -> ClientOptions {
    ClientOptions {
        kdf_memory_kib: Some(64),
        kdf_iterations: Some(1),
        ..ClientOptions::default()
    }
}

fn dir_of(path: &std::path::Path) -> String {
    path.display().to_string()
}

#[tokio::test]
async fn a_wrong_passphrase_and_missing_or_existing_profiles_are_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let profile = dir_of(&dir.path().join("p"));
    let client = Client::create(profile.clone(), "right".into(), fast())
        .await
        .unwrap();
    let address = client.address().unwrap();
    assert!(address.starts_with("sotto:"));
    assert!(matches!(
        Client::create(profile.clone(), "right".into(), fast()).await,
        Err(SottoError::ProfileExists)
    ));
    client.close().await.unwrap();

    assert!(matches!(
        Client::open(profile.clone(), "wrong".into(), fast()).await,
        Err(SottoError::WrongPassphrase)
    ));
    let missing = dir_of(&dir.path().join("nobody"));
    match Client::open(missing.clone(), "right".into(), fast()).await {
        Err(SottoError::NoProfile { path }) => assert_eq!(path, missing),
        other => panic!("{other:?}"),
    }
    let again = Client::open(profile, "right".into(), fast()).await.unwrap();
    assert_eq!(again.address().unwrap(), address);
    again.close().await.unwrap();
}

#[tokio::test]
async fn argon2_parameters_out_of_range_are_refused_before_anything_is_created() {
    let dir = tempfile::tempdir().unwrap();
    let profile = dir.path().join("p");
    let options = ClientOptions {
        kdf_iterations: Some(0),
        ..fast()
    };
    let refused = Client::create(dir_of(&profile), "x".into(), options).await;
    assert!(
        matches!(refused, Err(SottoError::Store { .. })),
        "{refused:?}"
    );
    assert!(!profile.exists());
}

#[tokio::test]
async fn every_call_on_a_closed_client_is_closed() {
    let dir = tempfile::tempdir().unwrap();
    let client = Client::create(dir_of(dir.path()), "pass".into(), fast())
        .await
        .unwrap();
    client.close().await.unwrap();
    client.close().await.unwrap();
    assert!(client.is_closed());
    assert!(!client.is_connected());
    assert!(matches!(client.address(), Err(SottoError::Closed)));
    assert!(matches!(client.device_id(), Err(SottoError::Closed)));
    assert!(matches!(
        client.send("bob".into(), b"x".to_vec()).await,
        Err(SottoError::Closed)
    ));
    assert!(matches!(
        client.history("bob".into(), None, 10).await,
        Err(SottoError::Closed)
    ));
    assert!(matches!(
        client.next_event(Some(10)).await,
        Err(SottoError::Closed)
    ));
    assert!(matches!(
        client.connect("127.0.0.1:1".into()).await,
        Err(SottoError::Closed)
    ));
}

#[tokio::test]
async fn contacts_refuse_bad_names_and_addresses_and_unknown_ones() {
    let dir = tempfile::tempdir().unwrap();
    let alice = Client::create(dir_of(&dir.path().join("a")), "a".into(), fast())
        .await
        .unwrap();
    let bob = Client::create(dir_of(&dir.path().join("b")), "b".into(), fast())
        .await
        .unwrap();
    let bob_address = bob.address().unwrap();
    assert!(matches!(
        alice.add_contact("bob".into(), "sotto:1234".into()).await,
        Err(SottoError::InvalidAddress { .. })
    ));
    assert!(matches!(
        alice.add_contact(" ".into(), bob_address.clone()).await,
        Err(SottoError::InvalidContactName)
    ));
    assert!(matches!(
        alice
            .add_contact("me".into(), alice.address().unwrap())
            .await,
        Err(SottoError::OwnAddress)
    ));
    alice
        .add_contact("bob".into(), bob_address.clone())
        .await
        .unwrap();
    assert!(matches!(
        alice.add_contact("bob".into(), bob_address).await,
        Err(SottoError::ContactExists { .. })
    ));
    match alice.send("carol".into(), b"hi".to_vec()).await {
        Err(SottoError::UnknownContact { contact }) => assert_eq!(contact, "carol"),
        other => panic!("{other:?}"),
    }
    // A first message needs the relay: nothing is stored without one.
    assert!(matches!(
        alice.send("bob".into(), b"hi".to_vec()).await,
        Err(SottoError::FirstMessageNeedsRelay { .. })
    ));
    assert!(
        alice
            .history("bob".into(), None, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(matches!(
        alice.connect("ftp://relay.example:1".into()).await,
        Err(SottoError::InvalidRelayAddress { .. })
    ));
    let contacts = alice.contacts().await.unwrap();
    assert_eq!(contacts.len(), 1);
    assert_eq!(contacts[0].name, "bob");
    assert!(!format!("{:?}", contacts[0]).contains("bob"));
    alice.close().await.unwrap();
    bob.close().await.unwrap();
}

#[tokio::test]
async fn next_event_times_out_with_none_and_a_waiting_one_ends_on_close() {
    let dir = tempfile::tempdir().unwrap();
    let client = std::sync::Arc::new(
        Client::create(dir_of(dir.path()), "pass".into(), fast())
            .await
            .unwrap(),
    );
    assert!(matches!(client.next_event(Some(20)).await, Ok(None)));
    let waiting = {
        let client = client.clone();
        tokio::spawn(async move { client.next_event(None).await })
    };
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert!(!waiting.is_finished());
    client.close().await.unwrap();
    let ended = tokio::time::timeout(std::time::Duration::from_secs(10), waiting)
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(ended, Err(SottoError::Closed)), "{ended:?}");
}

#[test]
fn facade_errors_keep_their_numbers_and_names() {
    let e: SottoError = sotto::Error::MessageTooLarge {
        len: 70000,
        max: 65000,
    }
    .into();
    assert!(matches!(
        e,
        SottoError::MessageTooLarge {
            len: 70000,
            max: 65000
        }
    ));
    let e: SottoError = sotto::Error::UnknownContact("zoe".into()).into();
    assert!(matches!(e, SottoError::UnknownContact { contact } if contact == "zoe"));
    let e: SottoError = sotto::Error::Store(sotto::store::Error::WrongPassphrase).into();
    assert!(matches!(e, SottoError::WrongPassphrase));
    let e: SottoError = sotto::Error::NotConnected.into();
    assert_eq!(e.to_string(), "not connected to a relay");
}
