//! The prekey directory: one-time prekeys go to one initiator each.

use std::collections::HashSet;
use std::sync::Arc;

use sotto_core::{IdentityKeyPair, OneTimePreKeyId, PreKeyPublic, SignedPreKey, SignedPreKeyId};
use sotto_relay::protocol::{
    OneTimePreKeyPublic, PreKeyUpload, Request, Response, SignedPreKeyPublic,
};
use sotto_relay::store::MailboxStore;
use sotto_relay::{
    ClientError, ErrorCode, MailboxAddress, MemoryStore, RelayEvent, ServerConfig, SqliteStore,
};

use crate::common::*;

async fn handed_out_once_then_exhausted_then_replenished(store: Arc<dyn MailboxStore>) {
    let relay = start_with(
        ServerConfig {
            prekey_low_threshold: 5,
            ..config()
        },
        store,
    )
    .await;
    let addr = relay.local_addr();
    let bob = identity(2);
    let bob_conn = owner(addr, &bob).await;
    let mut events = bob_conn.take_events().unwrap();
    let stock = bob_conn.upload_prekeys(prekeys(&bob, 0, 20)).await.unwrap();
    assert_eq!((stock.remaining, stock.threshold), (20, 5));
    assert!(!stock.is_low());

    // 30 initiators on their own connections, all at once.
    let mut tasks = Vec::new();
    for _ in 0..30 {
        let target = address(&bob);
        tasks.push(tokio::spawn(async move {
            let client = connect(addr).await;
            client.fetch_bundle(&target).await.unwrap()
        }));
    }
    let mut opk_ids = Vec::new();
    let mut without = 0;
    for task in tasks {
        let bundle = task.await.unwrap();
        bundle.verify().unwrap();
        assert_eq!(bundle.identity_key, *bob.public());
        match bundle.one_time_prekey {
            Some((id, _)) => opk_ids.push(id),
            None => without += 1,
        }
    }
    let distinct: HashSet<_> = opk_ids.iter().copied().collect();
    assert_eq!(opk_ids.len(), 20, "every one-time prekey handed out");
    assert_eq!(distinct.len(), 20, "none handed out twice");
    assert_eq!(without, 10, "exhausted: bundles without a one-time prekey");

    // The owner was told, down to zero.
    let mut lowest = u32::MAX;
    while lowest > 0 {
        match next_event(&mut events).await {
            RelayEvent::PreKeysLow(stock) => {
                assert!(stock.is_low());
                lowest = lowest.min(stock.remaining);
            }
            other => panic!("unexpected event {other:?}"),
        }
    }
    let stock = bob_conn.prekey_count().await.unwrap();
    assert_eq!(stock.remaining, 0);
    assert!(stock.is_low());

    // A reconnecting owner hears about it at once.
    let bob_again = owner(addr, &bob).await;
    let mut again = bob_again.take_events().unwrap();
    assert!(matches!(
        next_event(&mut again).await,
        RelayEvent::PreKeysLow(s) if s.remaining == 0
    ));

    // Replenish: new keys are handed out again.
    let stock = bob_conn
        .upload_prekeys(PreKeyUpload::from_public(
            None,
            prekeys(&bob, 100, 10).one_time_prekeys,
        ))
        .await
        .unwrap();
    assert_eq!(stock.remaining, 10);
    let bundle = connect(addr)
        .await
        .fetch_bundle(&address(&bob))
        .await
        .unwrap();
    assert_eq!(
        bundle.one_time_prekey.map(|k| k.0),
        Some(OneTimePreKeyId::new(100))
    );
    relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_time_prekeys_are_handed_out_at_most_once_memory() {
    handed_out_once_then_exhausted_then_replenished(Arc::new(MemoryStore::new())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_time_prekeys_are_handed_out_at_most_once_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("relay.db")).unwrap();
    handed_out_once_then_exhausted_then_replenished(Arc::new(store)).await;
}

/// The owner hears of every fetch that leaves fewer than the threshold, and
/// of none that leaves more; an upload that repeats stored ids counts them
/// once, so the stock the relay reports is what it can hand out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fetch_below_the_mark_is_pushed_and_repeated_ids_count_once() {
    let relay = start_with(
        ServerConfig {
            prekey_low_threshold: 5,
            ..config()
        },
        Arc::new(MemoryStore::new()),
    )
    .await;
    let addr = relay.local_addr();
    let bob = identity(2);
    let bob_conn = owner(addr, &bob).await;
    let mut events = bob_conn.take_events().unwrap();
    let low = |stock: RelayEvent| match stock {
        RelayEvent::PreKeysLow(stock) => stock.remaining,
        other => panic!("unexpected event {other:?}"),
    };
    // Nothing published yet: said right after authentication.
    assert_eq!(low(next_event(&mut events).await), 0);
    assert_eq!(
        bob_conn
            .upload_prekeys(prekeys(&bob, 0, 8))
            .await
            .unwrap()
            .remaining,
        8
    );
    let anyone = connect(addr).await;

    // 8 -> 5: not below the mark; 5 -> 4: below.
    for _ in 0..4 {
        anyone.fetch_bundle(&address(&bob)).await.unwrap();
    }
    assert_eq!(low(next_event(&mut events).await), 4);

    // Ids 4..=7 are still stored: uploading 4..=9 adds two keys, not six.
    let stock = bob_conn
        .upload_prekeys(PreKeyUpload::from_public(
            None,
            prekeys(&bob, 4, 6).one_time_prekeys,
        ))
        .await
        .unwrap();
    assert_eq!(stock.remaining, 6);
    assert_eq!(bob_conn.prekey_count().await.unwrap().remaining, 6);

    // 6 -> 5 is not pushed, 5 -> 4 is, and so is every fetch after it.
    for expected in [4, 3, 2, 1, 0, 0] {
        let before = anyone.fetch_bundle(&address(&bob)).await.unwrap();
        if expected == 4 {
            assert!(before.one_time_prekey.is_some());
            anyone.fetch_bundle(&address(&bob)).await.unwrap();
        }
        assert_eq!(low(next_event(&mut events).await), expected);
    }
    assert!(
        events.try_recv().is_err(),
        "one push per fetch below the mark"
    );
    relay.shutdown().await;
}

#[test]
fn two_relay_processes_sharing_a_database_never_hand_out_a_key_twice() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("relay.db");
    let bob = identity(2);
    // Two independent connections to one file, as two processes would have.
    let a = Arc::new(SqliteStore::open(&path).unwrap());
    let b = Arc::new(SqliteStore::open(&path).unwrap());
    a.publish_prekeys(bob.public(), &prekeys(&bob, 0, 60), 1000)
        .unwrap();
    let target = address(&bob);
    let threads: Vec<_> = (0..4)
        .map(|i| {
            let store = if i % 2 == 0 { a.clone() } else { b.clone() };
            std::thread::spawn(move || {
                (0..20)
                    .filter_map(|_| {
                        store
                            .take_bundle(&target)
                            .unwrap()
                            .unwrap()
                            .bundle
                            .one_time_prekey
                            .map(|k| k.0.get())
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let ids: Vec<u32> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    let distinct: HashSet<_> = ids.iter().copied().collect();
    assert_eq!(ids.len(), 60);
    assert_eq!(distinct.len(), 60);
}

#[tokio::test]
async fn invalid_uploads_are_refused_and_change_nothing() {
    let relay = start_with(
        ServerConfig {
            max_one_time_prekeys: 10,
            ..config()
        },
        Arc::new(MemoryStore::new()),
    )
    .await;
    let addr = relay.local_addr();
    let bob = identity(2);
    let bob_conn = owner(addr, &bob).await;
    let anyone = connect(addr).await;

    // No bundle yet.
    let err = anyone.fetch_bundle(&address(&bob)).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::NotFound));

    // A signed prekey signed by someone else.
    let mallory = IdentityKeyPair::from_seed(&[6; 32]);
    let forged = SignedPreKey::generate(SignedPreKeyId::new(1), &mallory, &mut rng());
    let err = bob_conn
        .upload_prekeys(PreKeyUpload::from_public(
            Some(SignedPreKeyPublic::from(&forged)),
            Vec::new(),
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::InvalidPreKey));

    // Repeated one-time prekey ids.
    let mut twice = prekeys(&bob, 0, 2);
    twice.one_time_prekeys[1].id = twice.one_time_prekeys[0].id;
    let err = bob_conn.upload_prekeys(twice).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::InvalidPreKey));

    // Too many.
    let err = bob_conn
        .upload_prekeys(prekeys(&bob, 0, 11))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::TooManyPreKeys));

    let err = anyone.fetch_bundle(&address(&bob)).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::NotFound), "nothing was stored");
    assert_eq!(bob_conn.prekey_count().await.unwrap().remaining, 0);

    // A valid one goes through; the bundle checks out for its address only.
    bob_conn.upload_prekeys(prekeys(&bob, 0, 10)).await.unwrap();
    anyone.fetch_bundle(&address(&bob)).await.unwrap();
    let err = anyone
        .fetch_bundle(&MailboxAddress::from_bytes([0; 32]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::NotFound));
    relay.shutdown().await;
}

fn from_hex(h: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&h[2 * i..2 * i + 2], 16).unwrap();
    }
    out
}

/// X25519 public keys no key agreement can use: points of small order
/// (every shared secret with them is all zeros) and non-canonical
/// encodings (values >= 2^255 - 19, or the unused top bit set).
fn unusable_x25519_keys() -> Vec<[u8; 32]> {
    let mut one = [0u8; 32];
    one[0] = 1;
    let mut top_bit = from_hex("0900000000000000000000000000000000000000000000000000000000000000");
    top_bit[31] |= 0x80;
    vec![
        [0u8; 32],
        one,
        from_hex("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"),
        from_hex("5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157"),
        from_hex("ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),
        // p and p + 1: non-canonical aliases of 0 and 1.
        from_hex("edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),
        from_hex("eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),
        top_bit,
    ]
}

#[tokio::test]
async fn small_order_or_non_canonical_prekeys_are_refused_at_upload() {
    let relay = start().await;
    let addr = relay.local_addr();
    let bob = identity(2);
    let bob_conn = owner(addr, &bob).await;
    let anyone = connect(addr).await;

    for key in unusable_x25519_keys() {
        // A signed prekey with a valid signature by Bob, still refused.
        let key = PreKeyPublic::from_bytes(key);
        let signed = SignedPreKeyPublic::new(SignedPreKeyId::new(9), key, bob.sign(&key.encode()));
        let err = bob_conn
            .upload_prekeys(PreKeyUpload::from_public(Some(signed), Vec::new()))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Some(ErrorCode::InvalidPreKey), "{key:02x?}");
        assert!(err.to_string().contains("small order"), "{err}");

        // One bad one-time prekey among good ones: the whole upload is refused.
        let mut upload = prekeys(&bob, 0, 3);
        upload
            .one_time_prekeys
            .push(OneTimePreKeyPublic::new(OneTimePreKeyId::new(77), key));
        let err = bob_conn.upload_prekeys(upload).await.unwrap_err();
        assert_eq!(err.code(), Some(ErrorCode::InvalidPreKey), "{key:02x?}");
        assert!(err.to_string().contains("one-time prekey 77"), "{err}");
    }
    // Nothing was stored: no bundle, no one-time prekeys, no mailbox.
    let err = anyone.fetch_bundle(&address(&bob)).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::NotFound));
    assert_eq!(bob_conn.prekey_count().await.unwrap().remaining, 0);
    let err = anyone
        .send(&address(&bob), mid(1), None, b"x")
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::UnknownRecipient));

    // The connection stays usable; good keys go through.
    bob_conn.upload_prekeys(prekeys(&bob, 0, 3)).await.unwrap();
    anyone.fetch_bundle(&address(&bob)).await.unwrap();
    relay.shutdown().await;
}

#[tokio::test]
async fn the_client_refuses_a_bundle_with_a_small_order_prekey() {
    // Written into the store directly, as a malicious relay or one that
    // predates the upload check would serve it.
    let store = Arc::new(MemoryStore::new());
    let bob = identity(2);
    let mut upload = prekeys(&bob, 0, 0);
    upload.one_time_prekeys.push(OneTimePreKeyPublic::new(
        OneTimePreKeyId::new(1),
        PreKeyPublic::from_bytes(unusable_x25519_keys()[2]),
    ));
    store.publish_prekeys(bob.public(), &upload, 10).unwrap();
    let relay = start_with(config(), store).await;
    let err = connect(relay.local_addr())
        .await
        .fetch_bundle(&address(&bob))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            ClientError::InvalidBundle(sotto_core::Error::InvalidPreKey)
        ),
        "{err:?}"
    );
    relay.shutdown().await;
}

/// Protocol 4: an owner publishes KEM prekeys; initiators fetch v2 bundles
/// that verify, each one-time KEM prekey served once, then the last-resort
/// one; forged KEM signatures are refused; v1 fetches and older clients
/// are as before.
#[tokio::test]
async fn kem_prekeys_are_served_once_in_v2_bundles_then_the_last_resort_one() {
    use sotto_core::{KemPreKey, KemPreKeyId, ProtocolVersions, Signature};
    let relay = start_with(
        ServerConfig {
            prekey_low_threshold: 2,
            max_kem_prekeys: 3,
            ..config()
        },
        Arc::new(MemoryStore::new()),
    )
    .await;
    let addr = relay.local_addr();
    let bob = identity(2);
    let bob_conn = owner(addr, &bob).await;
    assert!(bob_conn.supports_kem_prekeys());
    let mut rng = rng();
    let kem: Vec<KemPreKey> = (1..=4)
        .map(|i| KemPreKey::generate(KemPreKeyId::new(i), &bob, &mut rng))
        .collect();

    // A forged signature, on the last-resort or a one-time key: refused,
    // nothing stored, the connection goes on.
    let mut forged = prekeys(&bob, 0, 3).with_last_resort_kem_prekey(&kem[3]);
    if let Some(k) = forged.last_resort_kem_prekey.as_mut() {
        k.signature = Signature::from_bytes([7; 64]);
    }
    let mut forged_one_time = prekeys(&bob, 0, 3).with_one_time_kem_prekeys(&kem[..1], false);
    forged_one_time.one_time_kem_prekeys[0].signature = Signature::from_bytes([7; 64]);
    for upload in [forged, forged_one_time] {
        let err = bob_conn.upload_prekeys(upload).await.unwrap_err();
        assert_eq!(err.code(), Some(ErrorCode::InvalidPreKey));
        assert!(err.to_string().contains("KEM prekey"), "{err}");
    }
    // Another identity's KEM key: its signature does not verify either.
    let mallory = identity(9);
    let theirs = KemPreKey::generate(KemPreKeyId::new(1), &mallory, &mut rng);
    let upload = prekeys(&bob, 0, 3).with_one_time_kem_prekeys(&[theirs], false);
    let err = bob_conn.upload_prekeys(upload).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::InvalidPreKey));
    assert_eq!(bob_conn.prekey_count().await.unwrap().kem, None);
    // More one-time KEM prekeys than max_kem_prekeys.
    let upload = prekeys(&bob, 0, 3).with_one_time_kem_prekeys(&kem, false);
    let err = bob_conn.upload_prekeys(upload).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::TooManyPreKeys));

    let upload = prekeys(&bob, 0, 3)
        .with_last_resort_kem_prekey(&kem[3])
        .with_one_time_kem_prekeys(&kem[..3], false);
    let stock = bob_conn.upload_prekeys(upload).await.unwrap();
    assert_eq!(stock.remaining, 3);
    let kem_stock = stock.kem.unwrap();
    assert_eq!((kem_stock.remaining, kem_stock.threshold), (3, 2));

    // A v1 fetch takes a one-time prekey and no KEM prekey.
    let alice = connect(addr).await;
    let v1 = alice.fetch_bundle(&address(&bob)).await.unwrap();
    assert_eq!(v1.version(), 1);
    assert_eq!(
        bob_conn
            .prekey_count()
            .await
            .unwrap()
            .kem
            .unwrap()
            .remaining,
        3
    );

    let mut served = Vec::new();
    for _ in 0..5 {
        let bundle = alice.fetch_bundle_v2(&address(&bob)).await.unwrap();
        bundle.verify().unwrap();
        assert_eq!(bundle.versions, ProtocolVersions::V1_AND_V2);
        served.push(bundle.kem_prekey.map(|k| k.id.get()));
    }
    assert_eq!(served, [Some(1), Some(2), Some(3), Some(4), Some(4)]);
    let stock = bob_conn.prekey_count().await.unwrap();
    assert_eq!(stock.kem.map(|k| k.remaining), Some(0));
    assert!(stock.kem_is_low());

    // A client of protocol 3 sees the relay as before: v1 bundles, and
    // FetchBundleV2 is an unknown request there.
    let mut old = Raw::connect(addr).await;
    old.request(
        0,
        &Request::Hello {
            versions: vec![2, 3],
        },
    )
    .await;
    assert!(matches!(old.response(0).await, Response::Welcome(w) if w.version == 3));
    let target = address(&bob);
    old.request(1, &Request::FetchBundle { address: target })
        .await;
    assert!(matches!(old.response(1).await, Response::Bundle(b) if b.version() == 1));
    old.request(2, &Request::FetchBundleV2 { address: target })
        .await;
    assert_eq!(error_of(old.response(2).await).0, ErrorCode::UnknownRequest);
    old.request(3, &Request::Ping).await;
    assert_eq!(old.response(3).await, Response::Pong);
    relay.shutdown().await;
}

/// An owner whose signed prekey is signed for protocol v2 only has no v1
/// bundle: `FetchBundle` is answered as for an unknown mailbox
/// (`NotFound`, the same message) and spends none of its one-time
/// prekeys, while `FetchBundleV2` serves its v2 bundles.
#[tokio::test]
async fn a_v2_only_owner_has_no_v1_bundle_and_keeps_its_one_time_prekeys() {
    use sotto_core::{KemPreKey, KemPreKeyId, ProtocolVersions};
    let relay = start().await;
    let addr = relay.local_addr();
    let bob = identity(2);
    let bob_conn = owner(addr, &bob).await;
    let mut rng = rng();
    let spk = SignedPreKey::generate(SignedPreKeyId::new(5), &bob, &mut rng);
    let signed = SignedPreKeyPublic::new(spk.id(), *spk.public(), spk.v2_only_signature(&bob));
    let upload = PreKeyUpload::from_public(Some(signed), prekeys(&bob, 0, 3).one_time_prekeys)
        .with_signed_prekey_v2_only(true)
        .with_last_resort_kem_prekey(&KemPreKey::generate(KemPreKeyId::new(1), &bob, &mut rng));
    assert_eq!(bob_conn.upload_prekeys(upload).await.unwrap().remaining, 3);

    let alice = connect(addr).await;
    let unknown = alice
        .fetch_bundle(&MailboxAddress::from_bytes([0; 32]))
        .await
        .unwrap_err();
    for _ in 0..3 {
        let err = alice.fetch_bundle(&address(&bob)).await.unwrap_err();
        assert_eq!(err.code(), Some(ErrorCode::NotFound));
        assert_eq!(err.to_string(), unknown.to_string());
    }
    assert_eq!(bob_conn.prekey_count().await.unwrap().remaining, 3);

    let bundle = alice.fetch_bundle_v2(&address(&bob)).await.unwrap();
    bundle.verify().unwrap();
    assert_eq!(bundle.versions, ProtocolVersions::V2_ONLY);
    assert!(bundle.one_time_prekey.is_some());
    assert_eq!(bob_conn.prekey_count().await.unwrap().remaining, 2);
    relay.shutdown().await;
}
