//! Length-delimited framing over an async byte stream.
//!
//! A frame body is read into a buffer that grows only as its bytes arrive
//! (doubling from [`FIRST_CHUNK`], then at most [`MAX_GROWTH`] at a time, never
//! past the announced length): a peer that announces a large frame and then
//! stalls holds little memory. Before every growth the reader asks a
//! [`BodyBudget`], which the relay uses to charge the bytes to a relay-wide
//! budget (docs/relay.md §8).

use std::future::Future;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Bytes a body buffer starts with (or the whole body, if smaller).
pub(crate) const FIRST_CHUNK: usize = 4 * 1024;

/// The most a body buffer grows by at once, once it is large.
pub(crate) const MAX_GROWTH: usize = 64 * 1024;

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FrameError {
    /// The length prefix is above the limit; the body was not read.
    #[error("frame of {len} bytes exceeds the maximum of {max}")]
    TooLarge { len: u32, max: u32 },
    /// A length prefix of zero.
    #[error("empty frame")]
    Empty,
    /// The [`BodyBudget`] refused to let the body buffer grow.
    #[error("no memory budget for a frame of {len} bytes")]
    NoBudget { len: u32 },
    /// The stream failed or ended inside a frame.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Decides whether a frame body buffer may grow.
pub(crate) trait BodyBudget {
    /// Called before the buffer of a body of `len` bytes grows from
    /// `from` to `to` bytes of capacity; may wait for room. `false` stops
    /// the read with [`FrameError::NoBudget`].
    fn grow(&mut self, len: u32, from: usize, to: usize) -> impl Future<Output = bool> + Send;
}

/// A budget that always has room (the client side: the relay it talks to
/// is trusted not to flood it, and its frame limit bounds each frame).
pub(crate) struct Unbudgeted;

impl BodyBudget for Unbudgeted {
    async fn grow(&mut self, _len: u32, _from: usize, _to: usize) -> bool {
        true
    }
}

/// The capacity a body buffer of `len` bytes grows to from `capacity`.
fn next_capacity(capacity: usize, len: usize) -> usize {
    let step = capacity.clamp(FIRST_CHUNK, MAX_GROWTH);
    if capacity == 0 {
        FIRST_CHUNK.min(len)
    } else {
        capacity.saturating_add(step).min(len)
    }
}

/// Reads one frame body. `Ok(None)` is a clean end of stream between
/// frames.
pub(crate) async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
    max: u32,
) -> Result<Option<Vec<u8>>, FrameError> {
    let Some(first) = read_frame_start(reader).await? else {
        return Ok(None);
    };
    read_frame_rest(reader, first, max, &mut Unbudgeted)
        .await
        .map(Some)
}

/// Waits for the first byte of the next frame's length prefix; `None` at a
/// clean end of stream. Until it arrives, no frame is in progress (and no
/// frame deadline runs).
pub(crate) async fn read_frame_start<R: AsyncRead + Unpin>(
    reader: &mut R,
) -> std::io::Result<Option<u8>> {
    let mut first = [0u8; 1];
    if reader.read(&mut first).await? == 0 {
        return Ok(None);
    }
    Ok(Some(first[0]))
}

/// Reads the rest of a frame whose first length byte was `first`. The
/// length is checked against `max` before anything is allocated; the body
/// buffer then grows with the bytes that arrive, each growth allowed by
/// `budget` first.
pub(crate) async fn read_frame_rest<R, B>(
    reader: &mut R,
    first: u8,
    max: u32,
    budget: &mut B,
) -> Result<Vec<u8>, FrameError>
where
    R: AsyncRead + Unpin,
    B: BodyBudget,
{
    let mut prefix = [first, 0, 0, 0];
    reader.read_exact(&mut prefix[1..]).await?;
    let len = u32::from_be_bytes(prefix);
    if len == 0 {
        return Err(FrameError::Empty);
    }
    if len > max {
        return Err(FrameError::TooLarge { len, max });
    }
    let total = len as usize;
    let mut body: Vec<u8> = Vec::new();
    let mut filled = 0;
    while filled < total {
        if filled == body.len() {
            let to = next_capacity(body.len(), total);
            // While waiting for the budget, keep watching the stream: a
            // peer that hangs up must not keep its memory charged until
            // the frame deadline. At most one byte is read meanwhile, so
            // the end of the stream is seen only if at most one byte of
            // the frame is still unread; otherwise the deadline ends it.
            let mut early = [0u8; 1];
            let mut early_len = 0;
            {
                let grow = budget.grow(len, body.len(), to);
                tokio::pin!(grow);
                let allowed = loop {
                    tokio::select! {
                        allowed = &mut grow => break allowed,
                        read = reader.read(&mut early), if early_len == 0 => {
                            if read? == 0 {
                                return Err(FrameError::Io(
                                    std::io::ErrorKind::UnexpectedEof.into(),
                                ));
                            }
                            early_len = 1;
                        }
                    }
                };
                if !allowed {
                    return Err(FrameError::NoBudget { len });
                }
            }
            body.reserve_exact(to - body.len());
            body.resize(to, 0);
            if early_len == 1 {
                body[filled] = early[0];
                filled += 1;
                continue;
            }
        }
        let n = reader.read(&mut body[filled..]).await?;
        if n == 0 {
            return Err(FrameError::Io(std::io::ErrorKind::UnexpectedEof.into()));
        }
        filled += n;
    }
    Ok(body)
}

/// Writes `u32be(len) || body` and flushes.
pub(crate) async fn write_frame<W: AsyncWrite + Unpin>(
    writer: &mut W,
    body: &[u8],
) -> std::io::Result<()> {
    let len = u32::try_from(body.len())
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "frame too large"))?;
    writer.write_all(&len.to_be_bytes()).await?;
    writer.write_all(body).await?;
    writer.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn round_trip_and_limits() {
        let (mut a, mut b) = tokio::io::duplex(4096);
        write_frame(&mut a, b"hello").await.unwrap();
        assert_eq!(read_frame(&mut b, 16).await.unwrap().unwrap(), b"hello");

        a.write_all(&100u32.to_be_bytes()).await.unwrap();
        assert!(matches!(
            read_frame(&mut b, 16).await,
            Err(FrameError::TooLarge { len: 100, max: 16 })
        ));

        let (mut a, mut b) = tokio::io::duplex(4096);
        a.write_all(&0u32.to_be_bytes()).await.unwrap();
        assert!(matches!(
            read_frame(&mut b, 16).await,
            Err(FrameError::Empty)
        ));

        let (mut a, mut b) = tokio::io::duplex(4096);
        a.write_all(&[0, 0, 0, 9, 1, 2]).await.unwrap();
        drop(a);
        assert!(matches!(
            read_frame(&mut b, 16).await,
            Err(FrameError::Io(_))
        ));

        let (a, mut b) = tokio::io::duplex(4096);
        drop(a);
        assert!(read_frame(&mut b, 16).await.unwrap().is_none());
    }

    /// Records every growth it is asked for.
    #[derive(Default)]
    struct Recorder {
        growths: Vec<(usize, usize)>,
        refuse_above: Option<usize>,
    }

    impl BodyBudget for Recorder {
        async fn grow(&mut self, _len: u32, from: usize, to: usize) -> bool {
            self.growths.push((from, to));
            self.refuse_above.is_none_or(|limit| to <= limit)
        }
    }

    #[test]
    fn the_buffer_doubles_then_grows_in_bounded_steps_up_to_the_length() {
        let mut capacity = 0;
        let mut steps = Vec::new();
        while capacity < 300_000 {
            capacity = next_capacity(capacity, 300_000);
            steps.push(capacity);
        }
        assert_eq!(&steps[..6], [4096, 8192, 16384, 32768, 65536, 131072]);
        assert!(steps.windows(2).all(|w| w[1] - w[0] <= MAX_GROWTH));
        assert_eq!(steps.last(), Some(&300_000));
        assert_eq!(next_capacity(0, 10), 10);
    }

    /// A peer announcing a large frame and sending only part of it makes
    /// the reader hold about what arrived, not what was announced.
    #[tokio::test]
    async fn a_stalled_large_frame_holds_only_about_what_arrived() {
        let (mut a, mut b) = tokio::io::duplex(1 << 20);
        a.write_all(&(1u32 << 20).to_be_bytes()).await.unwrap();
        a.write_all(&[7u8; 10_000]).await.unwrap();
        let mut recorder = Recorder::default();
        let first = read_frame_start(&mut b).await.unwrap().unwrap();
        let read = tokio::time::timeout(
            std::time::Duration::from_millis(100),
            read_frame_rest(&mut b, first, 1 << 20, &mut recorder),
        )
        .await;
        assert!(read.is_err(), "the frame is not complete");
        // 10 000 bytes arrived: the buffer went 4 KiB, 8 KiB, 16 KiB.
        assert_eq!(recorder.growths, [(0, 4096), (4096, 8192), (8192, 16384)]);
    }

    /// A budget with no room, ever.
    struct Exhausted;

    impl BodyBudget for Exhausted {
        async fn grow(&mut self, _len: u32, from: usize, _to: usize) -> bool {
            if from == 0 {
                return true;
            }
            std::future::pending().await
        }
    }

    /// A peer that hangs up while its frame waits for memory is noticed at
    /// once if nothing more of the frame is in flight, so its charge does
    /// not stay until the frame deadline.
    #[tokio::test]
    async fn a_peer_hanging_up_while_waiting_for_budget_ends_the_read() {
        let (mut a, mut b) = tokio::io::duplex(1 << 16);
        a.write_all(&20_000u32.to_be_bytes()).await.unwrap();
        a.write_all(&[1u8; 4096]).await.unwrap();
        drop(a);
        let first = read_frame_start(&mut b).await.unwrap().unwrap();
        let read = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            read_frame_rest(&mut b, first, 1 << 20, &mut Exhausted),
        )
        .await
        .expect("not stuck waiting for the budget");
        assert!(matches!(read, Err(FrameError::Io(_))));
    }

    #[tokio::test]
    async fn a_refused_growth_stops_the_read() {
        let (mut a, mut b) = tokio::io::duplex(1 << 16);
        a.write_all(&20_000u32.to_be_bytes()).await.unwrap();
        a.write_all(&[1u8; 20_000]).await.unwrap();
        let mut recorder = Recorder {
            refuse_above: Some(8192),
            ..Recorder::default()
        };
        let first = read_frame_start(&mut b).await.unwrap().unwrap();
        assert!(matches!(
            read_frame_rest(&mut b, first, 1 << 20, &mut recorder).await,
            Err(FrameError::NoBudget { len: 20_000 })
        ));
        // A whole frame read with an unlimited budget is exact.
        let (mut a, mut b) = tokio::io::duplex(1 << 16);
        let body: Vec<u8> = (0..20_000u32).map(|i| i as u8).collect();
        write_frame(&mut a, &body).await.unwrap();
        let got = read_frame(&mut b, 1 << 20).await.unwrap().unwrap();
        assert_eq!(got, body);
        assert_eq!(got.capacity(), 20_000);
    }
}
