//! Attachments (docs/storage.md, "Attachments"): what the store keeps so
//! that a file goes up and comes down after any crash.
//!
//! A message whose body is an attachment's reference
//! ([`sotto_core::attachment::AttachmentRef`]) is stored like any other;
//! the reference holds the file's key, so deleting the message (or its
//! conversation, or its running out of time) shreds the key. The file
//! itself lives beside the store, as the encrypted blob, in the client's
//! care. Two tables remember work in progress:
//!
//! - `downloads`: the received messages whose file is not fetched yet, a
//!   row added in the transaction that stores the message, removed by
//!   [`Store::finish_download`] once the client has the file (or gave up);
//! - `uploads`: files on their way up, each a record the client defines,
//!   sealed under a random id, deleted in the transaction that sends the
//!   message referencing it ([`Store::send_upload`]).

use zeroize::Zeroizing;

use crate::error::Result;
use crate::records::check_contact_id;
use crate::store::Store;

impl Store {
    /// The received messages whose attachment is not downloaded yet, as
    /// `(contact, seq)`, in no particular order.
    pub fn pending_downloads(&self) -> Result<Vec<(String, u64)>> {
        self.read(|db| {
            let mut out = Vec::new();
            for (lookup, seq) in db.downloads()? {
                match db.conversation_by_lookup(&lookup)? {
                    Some(c) => out.push((c.contact, seq)),
                    None => continue,
                }
            }
            Ok(out)
        })
    }

    /// The attachment of message `seq` of `contact` is downloaded (or
    /// given up): it is no longer pending. Returns whether it was.
    pub fn finish_download(&mut self, contact: &str, seq: u64) -> Result<bool> {
        check_contact_id(contact)?;
        self.write(|db, _| db.delete_download(&db.conversation_lookup(contact), seq))
    }

    /// Keeps (or replaces) the record of upload `id`, sealed.
    pub fn put_upload(&mut self, id: &[u8; 16], record: &[u8]) -> Result<()> {
        self.write(|db, rng| db.put_upload(rng, id, record))
    }

    /// Every upload's id and record; an unreadable one is reported in
    /// place.
    #[allow(clippy::type_complexity)]
    pub fn uploads(&self) -> Result<Vec<([u8; 16], Result<Zeroizing<Vec<u8>>>)>> {
        self.read(|db| db.uploads())
    }

    /// Forgets upload `id` (given up); returns whether it was there.
    pub fn delete_upload(&mut self, id: &[u8; 16]) -> Result<bool> {
        self.write(|db, _| db.delete_upload(id))
    }
}
