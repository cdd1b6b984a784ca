//! The chunk layer: a byte stream cut into chunks of at most 256 KiB, each
//! sealed with ChaCha20-Poly1305 (RFC 8439, the `chacha20poly1305` crate).
//!
//! ```text
//! chunk i = u32be(len) || ciphertext || tag(16)          len = |ciphertext| + 16
//! nonce   = 0x00000000 || u64be(i)
//! AD      = "sotto/history-archive/v1" || header || u64be(i) || u8(final)
//! ```
//!
//! The index in the nonce and the AD makes a chunk that was moved or
//! dropped fail to open; the final flag makes a stream cut at a chunk
//! boundary fail (its last chunk was sealed as not final); the header in
//! the AD makes an altered header, or a chunk from another archive, fail.
//! The reader knows which chunk is the last one from the end of its input,
//! and tells truncation and trailing data apart from tampering by trying
//! the other flag only after a chunk failed to open.
//!
//! Nothing here knows about stores: the layer carries any byte stream
//! under any header and key (a device-to-device transfer reuses it with
//! its own key). The stream's plaintext is held in one chunk buffer,
//! allocated once and wiped on drop, so memory does not grow with the
//! stream.
//!
//! A history transfer travels as one frame per chunk (the chunk exactly
//! as written here, length included): [`read_frame`] cuts a written
//! stream into frames without the key, and [`ChunkOpener`] opens one
//! frame given on its own. It does not know whether a frame is the last
//! one, so it tries the final flag only after the frame failed to open
//! as a chunk that is not final: the flag is authenticated either way.

use std::io::{BufRead, Read, Write};

use chacha20poly1305::aead::AeadInOut;
use chacha20poly1305::{ChaCha20Poly1305, KeyInit, Nonce, Tag};
use zeroize::Zeroizing;

use super::ArchiveError;
use super::header::HEADER_LEN;
use crate::error::{Error, Result};

/// Largest plaintext of one chunk.
pub(crate) const MAX_CHUNK_PLAINTEXT: usize = 256 * 1024;
const TAG_LEN: usize = 16;
/// Largest value of a chunk's length field.
const MAX_CHUNK_LEN: usize = MAX_CHUNK_PLAINTEXT + TAG_LEN;
/// The first part of every chunk's associated data.
const AD_LABEL: &[u8] = b"sotto/history-archive/v1";
const AD_LEN: usize = AD_LABEL.len() + HEADER_LEN + 8 + 1;

// The AEAD state holds the key; with the `zeroize` feature it is wiped on
// drop. Checked here so a feature change cannot silently drop it.
const _: fn() = || {
    fn wiped_on_drop<T: zeroize::ZeroizeOnDrop>() {}
    wiped_on_drop::<ChaCha20Poly1305>();
};

/// Reads until `buf` is full or the input ends; returns how many bytes
/// were read.
pub(crate) fn read_full(input: &mut impl Read, buf: &mut [u8]) -> Result<usize, ArchiveError> {
    let mut n = 0;
    while n < buf.len() {
        match input.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(ArchiveError::Io(e)),
        }
    }
    Ok(n)
}

/// The key and the associated data of one stream.
struct ChunkCipher {
    cipher: ChaCha20Poly1305,
    ad: [u8; AD_LEN],
}

impl ChunkCipher {
    fn new(key: &[u8; 32], header: &[u8; HEADER_LEN]) -> Self {
        let mut ad = [0u8; AD_LEN];
        ad[..AD_LABEL.len()].copy_from_slice(AD_LABEL);
        ad[AD_LABEL.len()..AD_LABEL.len() + HEADER_LEN].copy_from_slice(header);
        Self {
            cipher: ChaCha20Poly1305::new(key.into()),
            ad,
        }
    }

    fn nonce(index: u64) -> Nonce {
        let mut nonce = [0u8; 12];
        nonce[4..].copy_from_slice(&index.to_be_bytes());
        Nonce::from(nonce)
    }

    fn set_ad(&mut self, index: u64, last: bool) {
        let at = AD_LABEL.len() + HEADER_LEN;
        self.ad[at..at + 8].copy_from_slice(&index.to_be_bytes());
        self.ad[at + 8] = u8::from(last);
    }

    fn seal(&mut self, index: u64, last: bool, buf: &mut [u8]) -> Result<Tag> {
        self.set_ad(index, last);
        self.cipher
            .encrypt_inout_detached(&Self::nonce(index), &self.ad, buf.into())
            .map_err(|_| Error::TooLong {
                what: "archive chunk",
                len: buf.len(),
                max: MAX_CHUNK_PLAINTEXT,
            })
    }

    /// Opens in place; on failure `buf` is left as it was.
    fn open(&mut self, index: u64, last: bool, buf: &mut [u8], tag: &Tag) -> bool {
        self.set_ad(index, last);
        self.cipher
            .decrypt_inout_detached(&Self::nonce(index), &self.ad, buf.into(), tag)
            .is_ok()
    }
}

/// Opens chunks handed over one at a time, each as its frame
/// `u32be(len) || ciphertext || tag` (a history transfer's envelopes).
pub(crate) struct ChunkOpener {
    cipher: ChunkCipher,
}

impl ChunkOpener {
    pub(crate) fn new(key: &[u8; 32], header: &[u8; HEADER_LEN]) -> Self {
        Self {
            cipher: ChunkCipher::new(key, header),
        }
    }

    /// Authenticates frame `index` and decrypts it into `out` (cleared
    /// first); returns whether it is the stream's final chunk. On error
    /// `out` holds no plaintext.
    pub(crate) fn open(
        &mut self,
        index: u64,
        frame: &[u8],
        out: &mut Zeroizing<Vec<u8>>,
    ) -> Result<bool, ArchiveError> {
        out.clear();
        let Some((len, sealed)) = frame.split_first_chunk::<4>() else {
            return Err(ArchiveError::Truncated { chunks: index });
        };
        let len = u32::from_be_bytes(*len);
        let size = len as usize;
        if size > MAX_CHUNK_LEN {
            return Err(ArchiveError::ChunkTooLarge {
                chunk: index,
                len,
                max: MAX_CHUNK_LEN as u32,
            });
        }
        if sealed.len() < size {
            return Err(ArchiveError::Truncated { chunks: index });
        }
        if sealed.len() > size {
            return Err(ArchiveError::TrailingData);
        }
        let refused = || {
            if index == 0 {
                ArchiveError::WrongSecret
            } else {
                ArchiveError::Tampered { chunk: index }
            }
        };
        let Some(body_len) = size.checked_sub(TAG_LEN) else {
            return Err(refused());
        };
        let (body, tag) = sealed.split_at(body_len);
        let tag = Tag::try_from(tag).map_err(|_| refused())?;
        out.extend_from_slice(body);
        // Almost every chunk is not the final one: that flag first.
        for last in [false, true] {
            if self.cipher.open(index, last, out, &tag) {
                return Ok(last);
            }
        }
        out.clear();
        Err(refused())
    }
}

/// Reads the next chunk of a stream (after its header) as its frame,
/// `u32be(len) || ciphertext || tag`, into `out` without opening it.
/// Returns `false` when the input ends before the chunk starts; a chunk
/// cut short is [`ArchiveError::Truncated`], one longer than a chunk can
/// be [`ArchiveError::ChunkTooLarge`] (before its body is read).
pub(crate) fn read_frame(
    input: &mut impl Read,
    index: u64,
    out: &mut Vec<u8>,
) -> Result<bool, ArchiveError> {
    out.clear();
    let mut len = [0u8; 4];
    match read_full(input, &mut len)? {
        0 => return Ok(false),
        4 => {}
        _ => return Err(ArchiveError::Truncated { chunks: index }),
    }
    let value = u32::from_be_bytes(len);
    let size = value as usize;
    if size > MAX_CHUNK_LEN {
        return Err(ArchiveError::ChunkTooLarge {
            chunk: index,
            len: value,
            max: MAX_CHUNK_LEN as u32,
        });
    }
    out.resize(4 + size, 0);
    out[..4].copy_from_slice(&len);
    if read_full(input, &mut out[4..])? < size {
        out.clear();
        return Err(ArchiveError::Truncated { chunks: index });
    }
    Ok(true)
}

/// Skips the next chunk of a stream without reading its body into memory;
/// returns `false` when the input ends before the chunk starts.
pub(crate) fn skip_frame(input: &mut impl Read, index: u64) -> Result<bool, ArchiveError> {
    let mut len = [0u8; 4];
    match read_full(input, &mut len)? {
        0 => return Ok(false),
        4 => {}
        _ => return Err(ArchiveError::Truncated { chunks: index }),
    }
    let value = u32::from_be_bytes(len);
    if value as usize > MAX_CHUNK_LEN {
        return Err(ArchiveError::ChunkTooLarge {
            chunk: index,
            len: value,
            max: MAX_CHUNK_LEN as u32,
        });
    }
    let skipped = std::io::copy(&mut input.take(u64::from(value)), &mut std::io::sink())
        .map_err(ArchiveError::Io)?;
    if skipped < u64::from(value) {
        return Err(ArchiveError::Truncated { chunks: index });
    }
    Ok(true)
}

/// Writes the header, then the stream given to [`write`](Self::write) as
/// chunks; [`finish`](Self::finish) seals the final one.
pub(crate) struct ChunkWriter<W: Write> {
    out: W,
    cipher: ChunkCipher,
    /// Index of the chunk being filled.
    index: u64,
    /// Plaintext of that chunk (sealed in place when it is written).
    buf: Zeroizing<Vec<u8>>,
    written: u64,
}

impl<W: Write> ChunkWriter<W> {
    /// Writes `header` to `out` and starts the first chunk.
    pub(crate) fn new(mut out: W, key: &[u8; 32], header: &[u8; HEADER_LEN]) -> Result<Self> {
        out.write_all(header).map_err(io)?;
        Ok(Self {
            out,
            cipher: ChunkCipher::new(key, header),
            index: 0,
            buf: Zeroizing::new(Vec::with_capacity(MAX_CHUNK_LEN)),
            written: HEADER_LEN as u64,
        })
    }

    /// Appends `data` to the stream. A full chunk is written only once
    /// more data follows, so that the last one can be sealed as final.
    pub(crate) fn write(&mut self, mut data: &[u8]) -> Result<()> {
        while !data.is_empty() {
            if self.buf.len() == MAX_CHUNK_PLAINTEXT {
                self.emit(false)?;
            }
            let take = (MAX_CHUNK_PLAINTEXT - self.buf.len()).min(data.len());
            self.buf.extend_from_slice(&data[..take]);
            data = &data[take..];
        }
        Ok(())
    }

    fn emit(&mut self, last: bool) -> Result<()> {
        let tag = self.cipher.seal(self.index, last, &mut self.buf)?;
        // Fits: at most MAX_CHUNK_LEN.
        let len = (self.buf.len() + TAG_LEN) as u32;
        self.out.write_all(&len.to_be_bytes()).map_err(io)?;
        self.out.write_all(&self.buf).map_err(io)?;
        self.out.write_all(&tag).map_err(io)?;
        self.written += 4 + u64::from(len);
        // The buffer holds ciphertext now; it is refilled from the start.
        self.buf.clear();
        self.index += 1;
        Ok(())
    }

    /// Chunks written so far.
    pub(crate) fn chunks(&self) -> u64 {
        self.index
    }

    /// Bytes written so far, header included.
    pub(crate) fn bytes_written(&self) -> u64 {
        self.written
    }

    /// Seals what is left as the final chunk (empty if the stream was) and
    /// flushes; returns the output and the bytes written.
    pub(crate) fn finish(mut self) -> Result<(W, u64)> {
        self.emit(true)?;
        self.out.flush().map_err(io)?;
        let written = self.written;
        Ok((self.out, written))
    }
}

fn io(e: std::io::Error) -> Error {
    Error::Archive(ArchiveError::Io(e))
}

/// Reads chunks after the header and hands out their plaintext as one
/// stream. Every chunk is authenticated before a byte of it is handed out.
pub(crate) struct ChunkReader<R: BufRead> {
    input: R,
    cipher: ChunkCipher,
    /// Index of the next chunk to read.
    index: u64,
    /// Plaintext of the current chunk, and how much of it was handed out.
    buf: Zeroizing<Vec<u8>>,
    pos: usize,
    /// The final chunk was read.
    finished: bool,
    read: u64,
}

impl<R: BufRead> ChunkReader<R> {
    /// Reads the chunks that follow `header` (already read) in `input`.
    pub(crate) fn new(input: R, key: &[u8; 32], header: &[u8; HEADER_LEN]) -> Self {
        Self {
            input,
            cipher: ChunkCipher::new(key, header),
            index: 0,
            buf: Zeroizing::new(Vec::with_capacity(MAX_CHUNK_LEN)),
            pos: 0,
            finished: false,
            read: HEADER_LEN as u64,
        }
    }

    /// Chunks read so far.
    pub(crate) fn chunks(&self) -> u64 {
        self.index
    }

    /// The chunk the last bytes handed out came from (for errors).
    pub(crate) fn current_chunk(&self) -> u64 {
        self.index.saturating_sub(1)
    }

    /// Bytes read so far, header included.
    pub(crate) fn bytes_read(&self) -> u64 {
        self.read
    }

    /// Reads, authenticates and decrypts the next chunk.
    fn next_chunk(&mut self) -> Result<(), ArchiveError> {
        let index = self.index;
        let mut len = [0u8; 4];
        if read_full(&mut self.input, &mut len)? < len.len() {
            return Err(ArchiveError::Truncated { chunks: index });
        }
        let len = u32::from_be_bytes(len);
        let size = len as usize;
        if size > MAX_CHUNK_LEN {
            return Err(ArchiveError::ChunkTooLarge {
                chunk: index,
                len,
                max: MAX_CHUNK_LEN as u32,
            });
        }
        if size < TAG_LEN {
            return Err(if index == 0 {
                ArchiveError::WrongSecret
            } else {
                ArchiveError::Tampered { chunk: index }
            });
        }
        self.buf.clear();
        self.buf.resize(size, 0);
        if read_full(&mut self.input, &mut self.buf)? < size {
            return Err(ArchiveError::Truncated { chunks: index });
        }
        let last = self.input.fill_buf().map_err(ArchiveError::Io)?.is_empty();
        let (body, tag) = self.buf.split_at_mut(size - TAG_LEN);
        let tag = Tag::try_from(&*tag).map_err(|_| ArchiveError::Tampered { chunk: index })?;
        if !self.cipher.open(index, last, body, &tag) {
            // Only now, to say why: the same chunk under the other flag.
            return Err(if self.cipher.open(index, !last, body, &tag) {
                if last {
                    ArchiveError::Truncated { chunks: index + 1 }
                } else {
                    ArchiveError::TrailingData
                }
            } else if index == 0 {
                ArchiveError::WrongSecret
            } else {
                ArchiveError::Tampered { chunk: index }
            });
        }
        self.buf.truncate(size - TAG_LEN);
        self.pos = 0;
        self.finished = last;
        self.index += 1;
        self.read += 4 + u64::from(len);
        Ok(())
    }

    /// Fills `out` from the stream. The stream ending first is a malformed
    /// record: the writer cut nothing short, the final chunk says so.
    pub(crate) fn read_exact(&mut self, out: &mut [u8]) -> Result<(), ArchiveError> {
        let mut filled = 0;
        while filled < out.len() {
            if self.pos == self.buf.len() {
                if self.finished {
                    return Err(ArchiveError::MalformedRecord {
                        chunk: self.current_chunk(),
                        what: "a record runs past the end of the archive",
                    });
                }
                self.next_chunk()?;
                continue;
            }
            let take = (self.buf.len() - self.pos).min(out.len() - filled);
            out[filled..filled + take].copy_from_slice(&self.buf[self.pos..self.pos + take]);
            self.pos += take;
            filled += take;
        }
        Ok(())
    }

    /// Skips `n` bytes of the stream.
    pub(crate) fn skip(&mut self, mut n: u64) -> Result<(), ArchiveError> {
        let mut scratch = Zeroizing::new([0u8; 4096]);
        while n > 0 {
            let take = n.min(scratch.len() as u64) as usize;
            self.read_exact(&mut scratch[..take])?;
            n -= take as u64;
        }
        Ok(())
    }

    /// True once the whole stream was handed out, its final chunk included
    /// (reads the next chunk if the current one is used up).
    pub(crate) fn at_end(&mut self) -> Result<bool, ArchiveError> {
        loop {
            if self.pos < self.buf.len() {
                return Ok(false);
            }
            if self.finished {
                return Ok(true);
            }
            self.next_chunk()?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::BufReader;

    const KEY: [u8; 32] = [7; 32];
    const HEADER: [u8; HEADER_LEN] = [1; HEADER_LEN];

    fn write_stream(data: &[u8], pieces: usize) -> Vec<u8> {
        let mut w = ChunkWriter::new(Vec::new(), &KEY, &HEADER).unwrap();
        for piece in data.chunks(pieces.max(1)) {
            w.write(piece).unwrap();
        }
        let (out, written) = w.finish().unwrap();
        assert_eq!(written, out.len() as u64);
        out
    }

    fn read_stream(archive: &[u8]) -> Result<Vec<u8>, ArchiveError> {
        let mut input = BufReader::new(archive);
        let mut header = [0u8; HEADER_LEN];
        input.read_exact(&mut header).unwrap();
        let mut r = ChunkReader::new(input, &KEY, &header);
        let mut out = Vec::new();
        while !r.at_end()? {
            let mut byte = [0u8; 1];
            r.read_exact(&mut byte)?;
            out.push(byte[0]);
        }
        Ok(out)
    }

    /// The offsets at which each chunk starts.
    fn chunk_starts(archive: &[u8]) -> Vec<usize> {
        let mut at = HEADER_LEN;
        let mut starts = Vec::new();
        while at < archive.len() {
            starts.push(at);
            let len = u32::from_be_bytes(archive[at..at + 4].try_into().unwrap()) as usize;
            at += 4 + len;
        }
        starts
    }

    #[test]
    fn streams_of_every_shape_roundtrip() {
        for len in [
            0,
            1,
            MAX_CHUNK_PLAINTEXT - 1,
            MAX_CHUNK_PLAINTEXT,
            MAX_CHUNK_PLAINTEXT + 1,
            2 * MAX_CHUNK_PLAINTEXT,
        ] {
            let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            for pieces in [1000, MAX_CHUNK_PLAINTEXT + 3] {
                let archive = write_stream(&data, pieces);
                let chunks = len.div_ceil(MAX_CHUNK_PLAINTEXT).max(1);
                assert_eq!(chunk_starts(&archive).len(), chunks, "len {len}");
                assert_eq!(read_stream(&archive).unwrap(), data, "len {len}");
            }
        }
    }

    #[test]
    fn frames_open_on_their_own_and_say_which_is_final() {
        let data: Vec<u8> = (0..2 * MAX_CHUNK_PLAINTEXT + 7).map(|i| i as u8).collect();
        let archive = write_stream(&data, 4096);
        let mut input = &archive[HEADER_LEN..];
        let mut frames = Vec::new();
        let mut frame = Vec::new();
        while read_frame(&mut input, frames.len() as u64, &mut frame).unwrap() {
            frames.push(frame.clone());
        }
        assert_eq!(frames.len(), 3);
        let mut skipping = &archive[HEADER_LEN..];
        assert!(skip_frame(&mut skipping, 0).unwrap());
        assert_eq!(skipping, &archive[HEADER_LEN + frames[0].len()..]);

        let mut opener = ChunkOpener::new(&KEY, &HEADER);
        let mut out = Zeroizing::new(Vec::new());
        // In any order, each as often as it comes.
        for i in [2usize, 0, 1, 1] {
            assert_eq!(opener.open(i as u64, &frames[i], &mut out).unwrap(), i == 2);
        }
        let mut ordered = Vec::new();
        for (i, f) in frames.iter().enumerate() {
            opener.open(i as u64, f, &mut out).unwrap();
            ordered.extend_from_slice(&out);
        }
        assert_eq!(ordered, data);

        // Under another index, cut, extended, flipped: refused, no plaintext.
        assert!(matches!(
            opener.open(1, &frames[0], &mut out),
            Err(ArchiveError::Tampered { chunk: 1 })
        ));
        assert!(out.is_empty());
        assert!(matches!(
            opener.open(0, &frames[1], &mut out),
            Err(ArchiveError::WrongSecret)
        ));
        assert!(matches!(
            opener.open(1, &frames[1][..100], &mut out),
            Err(ArchiveError::Truncated { chunks: 1 })
        ));
        assert!(matches!(
            opener.open(1, &frames[1][..3], &mut out),
            Err(ArchiveError::Truncated { chunks: 1 })
        ));
        let mut longer = frames[1].clone();
        longer.push(0);
        assert!(matches!(
            opener.open(1, &longer, &mut out),
            Err(ArchiveError::TrailingData)
        ));
        let mut flipped = frames[2].clone();
        flipped[10] ^= 1;
        assert!(matches!(
            opener.open(2, &flipped, &mut out),
            Err(ArchiveError::Tampered { chunk: 2 })
        ));
        let mut huge = frames[1].clone();
        huge[..4].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(
            opener.open(1, &huge, &mut out),
            Err(ArchiveError::ChunkTooLarge { chunk: 1, .. })
        ));
        let mut other = ChunkOpener::new(&[8; 32], &HEADER);
        assert!(matches!(
            other.open(0, &frames[0], &mut out),
            Err(ArchiveError::WrongSecret)
        ));
        // A stream cut inside a chunk.
        let mut cut = &archive[HEADER_LEN..HEADER_LEN + 10];
        assert!(matches!(
            read_frame(&mut cut, 0, &mut frame),
            Err(ArchiveError::Truncated { chunks: 0 })
        ));
    }

    #[test]
    fn cuts_moves_and_additions_are_told_apart() {
        let data: Vec<u8> = (0..3 * MAX_CHUNK_PLAINTEXT - 5).map(|i| i as u8).collect();
        let archive = write_stream(&data, 4096);
        let starts = chunk_starts(&archive);
        assert_eq!(starts.len(), 3);
        // Cut at each chunk boundary.
        for (i, &at) in starts.iter().enumerate() {
            let err = read_stream(&archive[..at]).unwrap_err();
            assert!(
                matches!(err, ArchiveError::Truncated { chunks } if chunks == i as u64),
                "{err:?}"
            );
        }
        // Cut inside a chunk.
        assert!(matches!(
            read_stream(&archive[..starts[1] + 100]),
            Err(ArchiveError::Truncated { chunks: 1 })
        ));
        // Data after the final chunk.
        let mut longer = archive.clone();
        longer.push(0);
        assert!(matches!(
            read_stream(&longer),
            Err(ArchiveError::TrailingData)
        ));
        // The second and third chunks swapped.
        let mut swapped = archive[..starts[1]].to_vec();
        swapped.extend_from_slice(&archive[starts[2]..]);
        swapped.extend_from_slice(&archive[starts[1]..starts[2]]);
        assert!(matches!(
            read_stream(&swapped),
            Err(ArchiveError::Tampered { chunk: 1 })
        ));
        // A chunk dropped from the middle.
        let mut dropped = archive[..starts[1]].to_vec();
        dropped.extend_from_slice(&archive[starts[2]..]);
        assert!(matches!(
            read_stream(&dropped),
            Err(ArchiveError::Tampered { chunk: 1 })
        ));
        // Another key, or another header, opens nothing.
        let mut other_header = archive.clone();
        other_header[3] ^= 1;
        assert!(matches!(
            read_stream(&other_header),
            Err(ArchiveError::WrongSecret)
        ));
        // A length beyond a chunk's size is refused before it is read.
        let mut huge = archive.clone();
        huge[starts[1]..starts[1] + 4].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(
            read_stream(&huge),
            Err(ArchiveError::ChunkTooLarge { chunk: 1, .. })
        ));
    }
}
