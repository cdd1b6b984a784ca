//! The relay's first frame, and recognising a peer that is no relay.
//!
//! The client speaks first (`Hello`); a relay's first frame is its
//! `Welcome` or an `Error`, and both are short and start alike
//! (docs/relay.md §3):
//!
//! ```text
//! u32be(len) || 0x80 (Welcome) or 0xFF (Error) || u32be(request_id) || payload
//! Welcome payload = "SOTR" || ...
//! ```
//!
//! So the first bytes from the peer tell at once whether it can be a relay:
//! an HTTP server's `HTTP/1.1 400 Bad Request`, an SSH banner or any other
//! protocol fails these checks on its first byte or so, and the client
//! says so ([`NotARelay::Answered`]) instead of reading it as the length of
//! a frame. A peer that accepts the connection and says nothing within
//! [`ClientConfig::hello_timeout`](super::ClientConfig::hello_timeout) is
//! no relay either ([`NotARelay::Silent`]): a relay answers `Hello` at
//! once.

use std::future::poll_fn;
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};

use super::ClientError;
use crate::protocol::{MAGIC, MAX_ERROR_MESSAGE_LEN};

/// What a peer that is no Sotto relay did instead of answering like one.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum NotARelay {
    /// It accepted the connection and sent nothing within the hello
    /// deadline ([`ClientConfig::hello_timeout`](super::ClientConfig::hello_timeout)).
    Silent {
        /// How long the client waited.
        waited: Duration,
    },
    /// It answered with bytes that cannot start a relay's first frame.
    Answered {
        /// The first bytes it sent (at most [`NotARelay::KEPT`]).
        start: Vec<u8>,
    },
}

impl NotARelay {
    /// Bytes of a foreign answer kept in [`NotARelay::Answered`].
    pub const KEPT: usize = 32;
}

impl core::fmt::Display for NotARelay {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Silent { waited } => write!(
                f,
                "no Sotto relay answered: the server accepted the connection but sent nothing \
                 within {waited:?} (wrong address or port?)"
            ),
            Self::Answered { start } => write!(
                f,
                "not a Sotto relay: the server answered \"{}\" (wrong address or port?)",
                start.escape_ascii()
            ),
        }
    }
}

/// The longest first frame a relay sends (length prefix value): an `Error`
/// with the longest message. A `Welcome` is at most 303 bytes.
pub(crate) const MAX_FIRST_FRAME_LEN: u32 = 5 + 2 + MAX_ERROR_MESSAGE_LEN as u32;

/// Bytes needed to check the start of a `Welcome`: length, type, request
/// id and magic.
const WELCOME_START: usize = 4 + 1 + 4 + 4;

/// Frame types a relay's first frame may have.
const WELCOME: u8 = 0x80;
const ERROR: u8 = 0xFF;

/// What the first bytes from a peer say about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// They start a relay's first frame.
    Relay,
    /// They start a TLS record: a TLS relay answering a plain `Hello`
    /// (type 0x15 alert or 0x16 handshake, then version 0x03 0x0N).
    Tls,
    /// No relay would send them.
    Foreign,
    /// Undecided: read until there are this many bytes. Never beyond the
    /// end of the frame, so nothing of the next frame is consumed.
    NeedMore(usize),
}

/// Judges the first bytes the peer sent.
pub(crate) fn judge(start: &[u8]) -> Verdict {
    let Some(&first) = start.first() else {
        return Verdict::NeedMore(5);
    };
    if matches!(first, 0x15 | 0x16) {
        return match start {
            [_, 0x03, minor, ..] if *minor <= 0x04 => Verdict::Tls,
            [_] | [_, 0x03] => Verdict::NeedMore(3),
            _ => Verdict::Foreign,
        };
    }
    // Every first frame is far below 16 MiB: its length starts with a zero
    // byte, which no text protocol sends first.
    if first != 0 {
        return Verdict::Foreign;
    }
    let (Some(prefix), Some(&frame_type)) = (start.first_chunk::<4>(), start.get(4)) else {
        return Verdict::NeedMore(5);
    };
    let len = u32::from_be_bytes(*prefix);
    // At least a type, a request id and an error code.
    if !(7..=MAX_FIRST_FRAME_LEN).contains(&len) {
        return Verdict::Foreign;
    }
    match frame_type {
        ERROR => Verdict::Relay,
        WELCOME => {
            // A frame too short for the magic is left to the decoder.
            let checked = WELCOME_START.min(4 + len as usize);
            match start.get(9..WELCOME_START) {
                Some(magic) if magic == MAGIC => Verdict::Relay,
                Some(_) => Verdict::Foreign,
                None if start.len() < checked => Verdict::NeedMore(checked),
                None => Verdict::Relay,
            }
        }
        _ => Verdict::Foreign,
    }
}

/// Reads the relay's first frame body. The first byte must arrive within
/// `hello_timeout`; the caller bounds the whole read. Reads nothing past
/// the end of the frame.
pub(crate) async fn read_first_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
    hello_timeout: Duration,
) -> Result<Vec<u8>, ClientError> {
    let mut start = [0u8; WELCOME_START];
    // Every first frame has at least 11 bytes: 5 never reach past it.
    let mut have = match tokio::time::timeout(hello_timeout, reader.read(&mut start[..5])).await {
        Err(_) => {
            return Err(ClientError::NotARelay(NotARelay::Silent {
                waited: hello_timeout,
            }));
        }
        Ok(read) => read?,
    };
    if have == 0 {
        return Err(ClientError::Closed);
    }
    loop {
        match judge(&start[..have]) {
            Verdict::Relay => break,
            Verdict::Tls => return Err(ClientError::RelayExpectsTls),
            Verdict::Foreign => {
                let answered = foreign_answer(reader, &start[..have]).await;
                return Err(ClientError::NotARelay(answered));
            }
            Verdict::NeedMore(wanted) => {
                let read = reader.read(&mut start[have..wanted]).await?;
                if read == 0 {
                    return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into());
                }
                have += read;
            }
        }
    }
    let len = start
        .first_chunk::<4>()
        .map_or(0, |prefix| u32::from_be_bytes(*prefix) as usize);
    let mut body = vec![0u8; len];
    let already = have.saturating_sub(4).min(len);
    body[..already].copy_from_slice(&start[4..4 + already]);
    reader.read_exact(&mut body[already..]).await?;
    Ok(body)
}

/// The peer's answer for the error: the bytes judged, and whatever else of
/// it has already arrived (without waiting for more).
async fn foreign_answer<R: AsyncRead + Unpin>(reader: &mut R, judged: &[u8]) -> NotARelay {
    let mut start = judged.to_vec();
    let mut more = [0u8; NotARelay::KEPT];
    let room = NotARelay::KEPT.saturating_sub(start.len());
    let mut buf = ReadBuf::new(&mut more[..room]);
    // One poll: only bytes already received.
    let polled = poll_fn(|cx| Poll::Ready(Pin::new(&mut *reader).poll_read(cx, &mut buf))).await;
    if let Poll::Ready(Ok(())) = polled {
        start.extend_from_slice(buf.filled());
    }
    NotARelay::Answered { start }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncWriteExt;

    use super::*;
    use crate::protocol::{ErrorCode, Response, Welcome};

    fn frame(body: &[u8]) -> Vec<u8> {
        let mut out = (body.len() as u32).to_be_bytes().to_vec();
        out.extend_from_slice(body);
        out
    }

    fn welcome() -> Vec<u8> {
        frame(
            &Response::Welcome(Welcome {
                version: 2,
                max_frame_size: 1 << 20,
                server_id: "r".into(),
                challenge: [7; 32],
            })
            .encode(0),
        )
    }

    /// The verdict once every prefix of `bytes` has been judged, as the
    /// reader would (reading what each verdict asks for).
    fn final_verdict(bytes: &[u8]) -> Verdict {
        let mut have = 1;
        loop {
            match judge(&bytes[..have]) {
                Verdict::NeedMore(wanted) => {
                    assert!(
                        wanted > have && wanted <= bytes.len(),
                        "{wanted} of {bytes:?}"
                    );
                    have += 1;
                }
                verdict => return verdict,
            }
        }
    }

    #[test]
    fn a_relays_first_frames_are_recognised_without_reading_past_them() {
        assert_eq!(final_verdict(&welcome()), Verdict::Relay);
        for code in [ErrorCode::UnsupportedVersion, ErrorCode::ServerBusy] {
            for message in ["", "relay is at its connection limit", &"x".repeat(1024)] {
                let error = frame(&Response::error(code, message).encode(0));
                assert_eq!(final_verdict(&error), Verdict::Relay, "{message:?}");
            }
        }
    }

    #[test]
    fn other_protocols_are_foreign_from_their_first_bytes() {
        for answer in [
            &b"HTTP/1.1 400 Bad Request\r\n"[..],
            b"SSH-2.0-OpenSSH_9.6\r\n",
            b"-ERR unknown command\r\n",
            b"220 mail.example ESMTP\r\n",
        ] {
            assert_eq!(judge(&answer[..1]), Verdict::Foreign, "{answer:?}");
        }
        // Zero bytes first, but not a relay's frame.
        assert_eq!(judge(&[0, 0, 0, 0, 0x80]), Verdict::Foreign); // empty
        assert_eq!(judge(&[0, 0x10, 0, 0, 0x80]), Verdict::Foreign); // too long
        assert_eq!(judge(&[0, 0, 0, 50, 0x88]), Verdict::Foreign); // not Welcome or Error
        let mut bad_magic = welcome();
        bad_magic[9..13].copy_from_slice(b"HTTP");
        assert_eq!(final_verdict(&bad_magic), Verdict::Foreign);
    }

    #[test]
    fn a_tls_record_is_a_tls_relay() {
        // A TLS alert (protocol version) and a handshake record.
        assert_eq!(final_verdict(&[0x15, 0x03, 0x03, 0x00, 0x02]), Verdict::Tls);
        assert_eq!(final_verdict(&[0x16, 0x03, 0x01, 0x00, 0x40]), Verdict::Tls);
        assert_eq!(judge(&[0x16, 0x04]), Verdict::Foreign);
    }

    #[tokio::test]
    async fn the_reader_stops_at_the_end_of_the_first_frame() {
        let (mut relay, mut client) = tokio::io::duplex(4096);
        let mut bytes = welcome();
        let next = frame(&Response::Pong.encode(9));
        bytes.extend_from_slice(&next);
        // Byte by byte, so every verdict is asked for.
        let writer = tokio::spawn(async move {
            for b in bytes {
                relay.write_all(&[b]).await.unwrap();
                tokio::task::yield_now().await;
            }
            relay
        });
        let body = read_first_frame(&mut client, Duration::from_secs(60))
            .await
            .unwrap();
        assert_eq!(body, welcome()[4..]);
        let _relay = writer.await.unwrap();
        let mut rest = vec![0u8; next.len()];
        client.read_exact(&mut rest).await.unwrap();
        assert_eq!(rest, next);
    }

    #[tokio::test]
    async fn a_foreign_answer_keeps_what_already_arrived() {
        let (mut server, mut client) = tokio::io::duplex(4096);
        let answer = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n";
        server.write_all(answer).await.unwrap();
        match read_first_frame(&mut client, Duration::from_secs(60)).await {
            Err(ClientError::NotARelay(NotARelay::Answered { start })) => {
                assert_eq!(start, answer[..NotARelay::KEPT]);
            }
            other => panic!("{other:?}"),
        }
    }
}
