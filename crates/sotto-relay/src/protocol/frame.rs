//! Length-delimited framing over an async byte stream.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FrameError {
    /// The length prefix is above the limit; the body was not read.
    #[error("frame of {len} bytes exceeds the maximum of {max}")]
    TooLarge { len: u32, max: u32 },
    /// A length prefix of zero.
    #[error("empty frame")]
    Empty,
    /// The stream failed or ended inside a frame.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Reads one frame body. `Ok(None)` is a clean end of stream between
/// frames. The body buffer grows with the bytes that actually arrive, so a
/// peer announcing a large frame and then stalling holds little memory.
pub(crate) async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
    max: u32,
) -> Result<Option<Vec<u8>>, FrameError> {
    let mut prefix = [0u8; 4];
    if reader.read(&mut prefix[..1]).await? == 0 {
        return Ok(None);
    }
    reader.read_exact(&mut prefix[1..]).await?;
    let len = u32::from_be_bytes(prefix);
    if len == 0 {
        return Err(FrameError::Empty);
    }
    if len > max {
        return Err(FrameError::TooLarge { len, max });
    }
    let mut body = Vec::with_capacity((len as usize).min(64 * 1024));
    reader.take(u64::from(len)).read_to_end(&mut body).await?;
    if body.len() != len as usize {
        return Err(FrameError::Io(std::io::ErrorKind::UnexpectedEof.into()));
    }
    Ok(Some(body))
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
}
