//! A contact that attacks: it publishes a signed prekey no session can be
//! started with, then reports that it could not decrypt a genuine message,
//! so that answering the report fails. That must cost the victim nothing
//! but that one report: everything queued behind it still arrives, and the
//! report is not tried again forever.
#![cfg(test)]

mod common;

use std::sync::Arc;

use common::*;
use sotto::core::{IdentityKeyPair, PreKeyBundle, PreKeyPublic, SignedPreKey, SignedPreKeyId};
use sotto::relay::protocol::SignedPreKeyPublic;
use sotto::relay::{ClientConfig, MessageId, PreKeyUpload, RelayClient, ServerConfig};
use sotto::store::CiphertextDigest;
use sotto::{Address, ClientEvent, Step};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poisoned_notice_costs_only_itself_and_the_mailbox_behind_it_arrives() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(InterceptingStore::new());
    let relay = relay_with(ServerConfig::default(), store.clone()).await;
    let addr = relay.local_addr().to_string();
    let (alice, bob) = pair(dir.path(), &addr).await;

    // Mallory registers honestly, and Alice writes to her.
    let mut rng = rand::rng();
    let mallory = IdentityKeyPair::generate(&mut rng);
    let mallory_conn = RelayClient::connect(relay.local_addr(), ClientConfig::default())
        .await
        .unwrap();
    mallory_conn.authenticate(&mallory).await.unwrap();
    let spk = SignedPreKey::generate(SignedPreKeyId::new(1), &mallory, &mut rng);
    mallory_conn
        .upload_prekeys(PreKeyUpload::from_public(
            Some(SignedPreKeyPublic::from(&spk)),
            Vec::new(),
        ))
        .await
        .unwrap();
    let mallory_address = Address::of(mallory.public());
    alice
        .add_contact("mallory", &mallory_address)
        .await
        .unwrap();
    alice.send("mallory", b"hello mallory").await.unwrap();
    // Mallory reads it: she can name its ciphertext in a notice.
    let received = mallory_conn.fetch_pending().await.unwrap();
    assert_eq!(received.len(), 1);
    let opened = sotto::core::sealed::open(&mallory, &received[0].payload).unwrap();
    // A message payload's body: Alice's access key, then the ciphertext.
    let message = sotto::PAYLOAD_OVERHEAD + sotto::core::access::ACCESS_KEY_LEN;
    let digest = CiphertextDigest::of(&opened.contents[message..]);

    // Her bundle now carries a signed prekey of small order, correctly
    // signed: no session can start from it.
    let mut poisoned = PreKeyBundle::new(&mallory, &spk, None);
    poisoned.signed_prekey = PreKeyPublic::from_bytes([0u8; 32]);
    poisoned.signed_prekey_signature = mallory.sign(&poisoned.signed_prekey.encode());
    store
        .bundles
        .lock()
        .unwrap()
        .insert(mallory_address.mailbox(), poisoned);

    // While Alice is offline: Mallory's notice first, then Bob's messages.
    alice.disconnect().await;
    let mut notice = vec![0x02, 0x02];
    notice.extend_from_slice(&[0x21; 16]);
    notice.extend_from_slice(&1_700_000_000_000u64.to_be_bytes());
    notice.extend_from_slice(digest.as_bytes());
    let sealed =
        sotto::core::sealed::seal(&mallory, alice.address().identity_key(), &notice, &mut rng)
            .unwrap();
    mallory_conn
        .send(
            &alice.address().mailbox(),
            MessageId::random().unwrap(),
            None,
            &sealed,
        )
        .await
        .unwrap();
    let texts = [
        "behind the poison 1",
        "behind the poison 2",
        "behind the poison 3",
    ];
    for t in texts {
        bob.send("alice", t.as_bytes()).await.unwrap();
    }

    // Alice comes back: the notice cannot be answered (the bundle is
    // refused), which is reported; Bob's messages all arrive.
    let mut events = alice.events();
    let mut incoming = alice.incoming();
    alice.connect(&addr).await.unwrap();
    expect_texts(&mut incoming, &texts).await;
    let reported = tokio::time::timeout(WAIT, async {
        loop {
            match events.next().await.unwrap() {
                ClientEvent::Error {
                    step: Step::Recovery,
                    error,
                } => return error.to_string(),
                ClientEvent::PeerCouldNotDecrypt { .. } => panic!("the notice was answered"),
                _ => {}
            }
        }
    })
    .await
    .unwrap();
    assert!(reported.contains("bundle"), "{reported}");

    // The notice was consumed: the mailbox is empty, a sync finds nothing
    // and succeeds.
    assert_eq!(alice.fetch_envelopes().await.unwrap().len(), 0);
    assert_eq!(alice.sync().await.unwrap(), 0);
    relay.shutdown().await;
}
