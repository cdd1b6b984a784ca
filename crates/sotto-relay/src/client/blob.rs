//! Blobs from the client's side (protocol version 5, docs/relay.md §12).

use std::time::Duration;

use super::{ClientError, ProtocolViolation, RelayClient, unexpected};
use crate::blob::{BlobId, BlobState, BlobToken};
use crate::protocol::{
    BLOBS_VERSION, ErrorCode, MAX_BLOB_TOKENS, Request, Response, max_blob_chunk,
};

impl RelayClient {
    /// Whether the relay keeps blobs: it negotiated protocol version 5 or
    /// later. Known from the handshake; without it every `blob_` method
    /// fails with [`ClientError::Unsupported`] before sending anything.
    pub fn supports_blobs(&self) -> bool {
        self.protocol_version() >= BLOBS_VERSION
    }

    /// Largest data a `BlobPut` / `BlobData` carries on this connection:
    /// the relay's frame limit less a `BlobPut`'s header
    /// ([`max_blob_chunk`]).
    pub fn max_blob_chunk(&self) -> usize {
        max_blob_chunk(self.inner.welcome.max_frame_size)
    }

    /// The error for a blob request on a relay that does not take it.
    fn blobs_unsupported(&self, request: &'static str) -> ClientError {
        ClientError::Unsupported {
            request,
            version: self.protocol_version(),
            needed: BLOBS_VERSION,
        }
    }

    /// Sends a blob request, mapping an `UnknownRequest` answer (a relay
    /// that negotiated protocol 5 and still does not know it) to
    /// [`ClientError::Unsupported`].
    async fn blob_request(
        &self,
        name: &'static str,
        request: Request,
    ) -> Result<Response, ClientError> {
        if !self.supports_blobs() {
            return Err(self.blobs_unsupported(name));
        }
        match self.inner.request(request).await {
            Err(ClientError::Server {
                code: ErrorCode::UnknownRequest,
                ..
            }) => Err(self.blobs_unsupported(name)),
            other => other,
        }
    }

    /// Creates a blob of `total_len` bytes on the relay, owned by the
    /// authenticated mailbox, that the relay deletes after `ttl` (rounded
    /// down to whole seconds, and up to the hour when stored) or once
    /// every one of `tokens` said [`blob_done`](Self::blob_done). The
    /// relay is given only the tokens' verifiers. Returns the id the relay
    /// drew.
    ///
    /// Refused by the relay: `total_len` over its `max_blob_size`
    /// ([`ErrorCode::BlobTooLarge`]), `ttl` of 0 or over its `max_blob_ttl`
    /// ([`ErrorCode::InvalidBlobRequest`]), the mailbox's blob bytes
    /// ([`ErrorCode::MailboxFull`]) or the relay's
    /// ([`ErrorCode::StorageFull`]) over their limit, and without
    /// authentication ([`ErrorCode::AuthRequired`]). Refused before
    /// sending: no token, or more than 64
    /// ([`ClientError::TooManyRecipients`]), or more than the relay's
    /// frame holds (at the smallest `max_frame_size`, 2055 bytes, 63:
    /// [`ClientError::RequestTooLarge`]); a `ttl` over `u32::MAX`
    /// seconds is sent as `u32::MAX` (and refused by any relay whose
    /// limit is lower).
    pub async fn blob_create(
        &self,
        total_len: u64,
        ttl: Duration,
        tokens: &[BlobToken],
    ) -> Result<BlobId, ClientError> {
        if !self.supports_blobs() {
            return Err(self.blobs_unsupported("BlobCreate"));
        }
        if tokens.is_empty() || tokens.len() > MAX_BLOB_TOKENS {
            return Err(ClientError::TooManyRecipients {
                count: tokens.len(),
                max: MAX_BLOB_TOKENS,
            });
        }
        // `type || id || total_len || ttl || n || n × verifier`: 64 tokens
        // take 2066 bytes, more than the smallest frame limit (2055).
        let len = 5 + 8 + 4 + 1 + 32 * tokens.len();
        let max_frame = self.inner.welcome.max_frame_size as usize;
        if len > max_frame {
            return Err(ClientError::RequestTooLarge {
                len,
                max: max_frame,
            });
        }
        let request = Request::BlobCreate {
            total_len,
            ttl_secs: u32::try_from(ttl.as_secs()).unwrap_or(u32::MAX),
            verifiers: tokens.iter().map(BlobToken::verifier).collect(),
        };
        match self.blob_request("BlobCreate", request).await? {
            Response::BlobCreated(id) => Ok(id),
            _ => Err(unexpected()),
        }
    }

    /// Appends `data` at `offset` to blob `id` (created by this
    /// connection's mailbox) and returns the bytes the relay holds now,
    /// durably. Resending at an offset below that is harmless: nothing is
    /// written and the answer says where to go on; after a lost connection
    /// ask [`blob_status`](Self::blob_status) and go on from its
    /// `stored_len`. `data` is at most
    /// [`max_blob_chunk`](Self::max_blob_chunk) bytes
    /// ([`ClientError::PayloadTooLarge`] before sending).
    ///
    /// Refused by the relay: another mailbox's blob, or none
    /// ([`ErrorCode::NotFound`]), an `offset` past the stored bytes or
    /// data past the blob's length ([`ErrorCode::InvalidBlobRequest`]).
    pub async fn blob_put(
        &self,
        id: &BlobId,
        offset: u64,
        data: &[u8],
    ) -> Result<u64, ClientError> {
        if !self.supports_blobs() {
            return Err(self.blobs_unsupported("BlobPut"));
        }
        let max = self.max_blob_chunk();
        if data.len() > max {
            return Err(ClientError::PayloadTooLarge {
                len: data.len(),
                max,
            });
        }
        let request = Request::BlobPut {
            id: *id,
            offset,
            data: data.to_vec(),
        };
        match self.blob_request("BlobPut", request).await? {
            Response::BlobStored { stored_len } => Ok(stored_len),
            _ => Err(unexpected()),
        }
    }

    /// How much of blob `id` the relay holds: for its uploader (this
    /// connection authenticated as it, `token` may be `None`) or the
    /// holder of one of its tokens. Anyone else, or a blob that is gone,
    /// gets [`ErrorCode::NotFound`].
    pub async fn blob_status(
        &self,
        id: &BlobId,
        token: Option<&BlobToken>,
    ) -> Result<BlobState, ClientError> {
        let request = Request::BlobStatus {
            id: *id,
            token: token.cloned(),
        };
        match self.blob_request("BlobStatus", request).await? {
            Response::BlobState(state) => {
                if state.stored_len > state.total_len {
                    return Err(ProtocolViolation::UnexpectedResponse.into());
                }
                Ok(state)
            }
            _ => Err(unexpected()),
        }
    }

    /// Up to `max_len` bytes of complete blob `id` from `offset` (fewer at
    /// its end and at most a frame's worth; none at its length), for the
    /// holder of `token`; no login needed. Before every byte is uploaded:
    /// [`ErrorCode::BlobIncomplete`]; a wrong token or a blob that is gone:
    /// [`ErrorCode::NotFound`].
    pub async fn blob_get(
        &self,
        id: &BlobId,
        token: &BlobToken,
        offset: u64,
        max_len: u32,
    ) -> Result<Vec<u8>, ClientError> {
        let request = Request::BlobGet {
            id: *id,
            token: token.clone(),
            offset,
            max_len,
        };
        match self.blob_request("BlobGet", request).await? {
            Response::BlobData {
                offset: answered,
                data,
            } => {
                if answered != offset || data.len() > max_len as usize {
                    return Err(ProtocolViolation::UnexpectedResponse.into());
                }
                Ok(data)
            }
            _ => Err(unexpected()),
        }
    }

    /// Tells the relay the holder of `token` has blob `id` (again: no
    /// change). Returns whether this deleted the blob, every token being
    /// done now. A blob that is already gone, also because this token's
    /// earlier `blob_done` was the last, is [`ErrorCode::NotFound`]:
    /// treat it as done.
    pub async fn blob_done(&self, id: &BlobId, token: &BlobToken) -> Result<bool, ClientError> {
        let request = Request::BlobDone {
            id: *id,
            token: token.clone(),
        };
        match self.blob_request("BlobDone", request).await? {
            Response::BlobReleased { deleted } => Ok(deleted),
            _ => Err(unexpected()),
        }
    }
}
