//! Blobs: opaque, end-to-end encrypted files a client uploads to the
//! relay for its recipients to download (docs/relay.md §12, protocol
//! version 5).
//!
//! The relay stores a blob's bytes as they arrive and hands them to
//! whoever presents one of the blob's tokens. It never sees a token, only
//! its [verifier](BlobToken::verifier), and deletes the blob once every
//! token's holder said it is done, or when the blob expires.
//!
//! [`BlobId`], [`BlobToken`] and [`BlobState`] are the client's words
//! (always compiled); the `BlobStore` trait and its two stores,
//! `DirBlobStore` and `MemoryBlobStore`, are the server's (feature
//! `server`).

#[cfg(feature = "server")]
mod dir;
mod id;
#[cfg(feature = "server")]
mod memory;
#[cfg(feature = "server")]
mod store;

#[cfg(feature = "server")]
pub use dir::DirBlobStore;
pub use id::{BLOB_TOKEN_DOMAIN, BlobId, BlobState, BlobToken, BlobVerifier};
#[cfg(feature = "server")]
pub use memory::MemoryBlobStore;
#[cfg(feature = "server")]
pub use store::{
    Appended, BlobError, BlobLimits, BlobStore, BlobTotals, DEFAULT_MAX_BLOB_BYTES_PER_MAILBOX,
    DEFAULT_MAX_BLOB_SIZE, DEFAULT_MAX_BLOB_TTL, DEFAULT_MAX_TOTAL_BLOB_BYTES,
    DEFAULT_MEMORY_BLOB_BYTES, NewBlob, SweptBlobs,
};
