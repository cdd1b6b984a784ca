//! Cutting a written transfer into the frames that travel as envelopes:
//! the header, then each chunk (`u32be(len) || ciphertext || tag`) with
//! its index. Needs no key: the frames are sent as they were written.

use std::io::Read;

use super::super::chunks::{read_frame, skip_frame};
use super::super::header::{HEADER_LEN, Header};
use super::super::{ArchiveError, ArchiveId, ArchiveKind};
use crate::error::{Error, Result};

/// The frames of a history transfer written by
/// [`Store::export_history_transfer`](crate::Store::export_history_transfer),
/// read from `R` (the file it was written to): first
/// [`header`](Self::header), for
/// [`begin_history_transfer`](crate::Store::begin_history_transfer) on the
/// other device, then, as an iterator, `(index, frame)` for each chunk,
/// for [`apply_history_chunk`](crate::Store::apply_history_chunk). Send
/// each as its own envelope, with its index.
///
/// To resume after a crash, or when the other device asks for it, open
/// the file again and [`skip_to`](Self::skip_to) the chunk it needs next.
/// Nothing here is secret (the frames are ciphertext) and nothing is
/// checked but the framing: the receiving store authenticates each chunk.
/// A frame is at most 256 KiB + 20 bytes.
#[derive(Debug)]
pub struct TransferFrames<R> {
    input: R,
    header: [u8; HEADER_LEN],
    id: ArchiveId,
    /// Index of the next chunk.
    next: u64,
    /// The input ended or failed: the iterator yields nothing more.
    done: bool,
}

impl<R: Read> TransferFrames<R> {
    /// Reads the header at the start of `input`. A backup archive is
    /// refused ([`ArchiveError::WrongKind`]): only a transfer, which holds
    /// no identity, may leave the device this way.
    pub fn new(mut input: R) -> Result<Self> {
        let (header, bytes) = Header::read(&mut input)?;
        header.kind.expect(ArchiveKind::Transfer)?;
        Ok(Self {
            input,
            header: bytes,
            id: header.id,
            next: 0,
            done: false,
        })
    }

    /// The header, the transfer's first frame.
    pub fn header(&self) -> &[u8] {
        &self.header
    }

    /// The transfer's id (also in its header).
    pub fn id(&self) -> ArchiveId {
        self.id
    }

    /// The index of the chunk the iterator yields next.
    pub fn next_index(&self) -> u64 {
        self.next
    }

    /// Moves forward to chunk `index` (the receiver's
    /// [`next_chunk`](super::TransferProgress::next_chunk)): the chunks
    /// before it are read past, not kept. A transfer with fewer chunks is
    /// [`ArchiveError::Truncated`]; an index the frames have already gone
    /// past is refused (open the file again).
    pub fn skip_to(&mut self, index: u64) -> Result<()> {
        if index < self.next {
            return Err(Error::Archive(ArchiveError::Io(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "the transfer's frames are already past that chunk",
            ))));
        }
        while self.next < index {
            if !skip_frame(&mut self.input, self.next)? {
                self.done = true;
                return Err(Error::Archive(ArchiveError::Truncated {
                    chunks: self.next,
                }));
            }
            self.next += 1;
        }
        Ok(())
    }
}

impl<R: Read> Iterator for TransferFrames<R> {
    /// A chunk's index and its frame, or why the input could not be read
    /// (after which the iterator ends).
    type Item = Result<(u64, Vec<u8>)>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let index = self.next;
        let mut frame = Vec::new();
        match read_frame(&mut self.input, index, &mut frame) {
            Ok(true) => {
                self.next += 1;
                Some(Ok((index, frame)))
            }
            Ok(false) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e.into()))
            }
        }
    }
}

impl<R: Read> std::iter::FusedIterator for TransferFrames<R> {}
