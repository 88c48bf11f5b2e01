//! The frames of an exec stream (`devhost exec`, see [`super::exec`]): after
//! the upgrade both sides speak `[kind u8][length u32, big endian][data]`.
//! The client sends stdin and the end of stdin; the agent sends stdout and
//! stderr, kept apart, and last the command's exit status (and, every few
//! seconds, an empty stdout frame: nothing to print, it finds a client
//! that has gone). A frame's data is at most [`MAX_FRAME`] bytes; a longer one, an unknown kind or a frame
//! cut short ends the stream as a protocol error. Pure: encoding and
//! decoding from bytes, with thin readers for blocking and async streams.

/// Largest data of one frame.
pub const MAX_FRAME: usize = 64 * 1024;
/// Kind and length.
pub const HEADER: usize = 5;

const STDIN: u8 = 0;
const STDIN_EOF: u8 = 1;
const STDOUT: u8 = 2;
const STDERR: u8 = 3;
const EXIT: u8 = 4;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// Client → agent: bytes for the command's stdin.
    Stdin(Vec<u8>),
    /// Client → agent: the command's stdin ends (it reads end of file).
    StdinEof,
    /// Agent → client.
    Stdout(Vec<u8>),
    /// Agent → client.
    Stderr(Vec<u8>),
    /// Agent → client, last: the command's exit status (128 + N when a
    /// signal N ended it).
    Exit(i32),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("unknown frame kind {0}")]
    UnknownKind(u8),
    #[error("a frame of {len} bytes is larger than {MAX_FRAME}")]
    TooLarge { len: u32 },
    #[error("a {what} frame of {len} bytes (it has {want})")]
    BadLength {
        what: &'static str,
        len: usize,
        want: usize,
    },
    #[error("the stream ended inside a frame")]
    Truncated,
    #[error("{0}")]
    Io(String),
}

impl Frame {
    /// The frame as it goes on the wire. Data longer than [`MAX_FRAME`] is
    /// the sender's bug: split it with [`Frame::chunks`].
    pub fn encode(&self) -> Vec<u8> {
        let (kind, data): (u8, std::borrow::Cow<[u8]>) = match self {
            Frame::Stdin(d) => (STDIN, d.into()),
            Frame::StdinEof => (STDIN_EOF, (&[][..]).into()),
            Frame::Stdout(d) => (STDOUT, d.into()),
            Frame::Stderr(d) => (STDERR, d.into()),
            Frame::Exit(code) => (EXIT, code.to_be_bytes().to_vec().into()),
        };
        assert!(data.len() <= MAX_FRAME, "frame data over MAX_FRAME");
        let mut v = Vec::with_capacity(HEADER + data.len());
        v.push(kind);
        v.extend_from_slice(&(data.len() as u32).to_be_bytes());
        v.extend_from_slice(&data);
        v
    }

    /// `data` as frames of at most [`MAX_FRAME`] bytes made by `make`.
    pub fn chunks(data: &[u8], make: fn(Vec<u8>) -> Frame) -> impl Iterator<Item = Frame> + '_ {
        data.chunks(MAX_FRAME).map(move |c| make(c.to_vec()))
    }

    /// The kind and data length a header announces; refused before any
    /// data is read when the kind is unknown or the length too large.
    pub fn header(h: [u8; HEADER]) -> Result<(u8, usize), FrameError> {
        let kind = h[0];
        if kind > EXIT {
            return Err(FrameError::UnknownKind(kind));
        }
        let len = u32::from_be_bytes([h[1], h[2], h[3], h[4]]);
        if len as usize > MAX_FRAME {
            return Err(FrameError::TooLarge { len });
        }
        Ok((kind, len as usize))
    }

    /// The frame of a checked header's `kind` and its `data`.
    pub fn from_parts(kind: u8, data: Vec<u8>) -> Result<Frame, FrameError> {
        let exact = |what, want: usize, data: &Vec<u8>| {
            if data.len() == want {
                Ok(())
            } else {
                Err(FrameError::BadLength {
                    what,
                    len: data.len(),
                    want,
                })
            }
        };
        Ok(match kind {
            STDIN => Frame::Stdin(data),
            STDIN_EOF => {
                exact("stdin-eof", 0, &data)?;
                Frame::StdinEof
            }
            STDOUT => Frame::Stdout(data),
            STDERR => Frame::Stderr(data),
            EXIT => {
                exact("exit", 4, &data)?;
                Frame::Exit(i32::from_be_bytes([data[0], data[1], data[2], data[3]]))
            }
            other => return Err(FrameError::UnknownKind(other)),
        })
    }

    /// The first frame in `buf` and the bytes it took; `None` while
    /// `buf` holds only part of it.
    pub fn decode(buf: &[u8]) -> Result<Option<(Frame, usize)>, FrameError> {
        let Some(h) = buf.get(..HEADER) else {
            return Ok(None);
        };
        let (kind, len) = Frame::header(h.try_into().expect("five bytes"))?;
        let Some(data) = buf.get(HEADER..HEADER + len) else {
            return Ok(None);
        };
        Ok(Some((
            Frame::from_parts(kind, data.to_vec())?,
            HEADER + len,
        )))
    }
}

/// Fill `buf` from `r`: `Ok(false)` when the stream ended before the
/// first byte.
fn fill<R: std::io::Read>(r: &mut R, buf: &mut [u8]) -> Result<bool, FrameError> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) if got == 0 => return Ok(false),
            Ok(0) => return Err(FrameError::Truncated),
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(FrameError::Io(e.to_string())),
        }
    }
    Ok(true)
}

/// The next frame of a blocking stream; `None` at its end (between
/// frames).
pub fn read<R: std::io::Read>(r: &mut R) -> Result<Option<Frame>, FrameError> {
    let mut h = [0u8; HEADER];
    if !fill(r, &mut h)? {
        return Ok(None);
    }
    let (kind, len) = Frame::header(h)?;
    let mut data = vec![0u8; len];
    if len > 0 && !fill(r, &mut data)? {
        return Err(FrameError::Truncated);
    }
    Frame::from_parts(kind, data).map(Some)
}

/// The next frame of an async stream; `None` at its end (between frames).
pub async fn read_async<R: tokio::io::AsyncRead + Unpin>(
    r: &mut R,
) -> Result<Option<Frame>, FrameError> {
    use tokio::io::AsyncReadExt;
    let mut h = [0u8; HEADER];
    let mut got = 0;
    while got < HEADER {
        match r.read(&mut h[got..]).await {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => return Err(FrameError::Truncated),
            Ok(n) => got += n,
            Err(e) => return Err(FrameError::Io(e.to_string())),
        }
    }
    let (kind, len) = Frame::header(h)?;
    let mut data = vec![0u8; len];
    r.read_exact(&mut data).await.map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            FrameError::Truncated
        } else {
            FrameError::Io(e.to_string())
        }
    })?;
    Frame::from_parts(kind, data).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all() -> Vec<Frame> {
        vec![
            Frame::Stdin(b"hello\n".to_vec()),
            Frame::StdinEof,
            Frame::Stdout(vec![0, 1, 2, 255]),
            Frame::Stderr(Vec::new()),
            Frame::Stdout(vec![b'x'; MAX_FRAME]),
            Frame::Exit(137),
            Frame::Exit(0),
        ]
    }

    #[test]
    fn frames_round_trip() {
        let wire: Vec<u8> = all().iter().flat_map(Frame::encode).collect();
        // From one buffer …
        let mut rest = &wire[..];
        let mut back = Vec::new();
        while let Some((f, used)) = Frame::decode(rest).unwrap() {
            back.push(f);
            rest = &rest[used..];
        }
        assert_eq!(back, all());
        assert!(rest.is_empty());
        // … and from a stream, one byte at a time.
        struct Trickle<'a>(&'a [u8]);
        impl std::io::Read for Trickle<'_> {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                let Some((&b, rest)) = self.0.split_first() else {
                    return Ok(0);
                };
                buf[0] = b;
                self.0 = rest;
                Ok(1)
            }
        }
        let mut r = Trickle(&wire);
        let mut back = Vec::new();
        while let Some(f) = read(&mut r).unwrap() {
            back.push(f);
        }
        assert_eq!(back, all());
    }

    #[test]
    fn the_wire_format_is_kind_length_data() {
        assert_eq!(
            Frame::Stdout(b"hi".to_vec()).encode(),
            [2, 0, 0, 0, 2, b'h', b'i']
        );
        assert_eq!(Frame::Exit(3).encode(), [4, 0, 0, 0, 4, 0, 0, 0, 3]);
        assert_eq!(Frame::StdinEof.encode(), [1, 0, 0, 0, 0]);
    }

    #[test]
    fn a_truncated_frame_is_an_error() {
        let wire = Frame::Stdout(b"hello".to_vec()).encode();
        for cut in 1..wire.len() {
            assert_eq!(Frame::decode(&wire[..cut]), Ok(None), "incomplete at {cut}");
            assert_eq!(
                read(&mut &wire[..cut]),
                Err(FrameError::Truncated),
                "the stream ends at {cut}"
            );
        }
        assert_eq!(read(&mut &[][..]), Ok(None), "an end between frames");
    }

    #[tokio::test]
    async fn a_truncated_frame_is_an_error_async_too() {
        let wire = Frame::Stderr(b"oops".to_vec()).encode();
        assert_eq!(
            read_async(&mut &wire[..7]).await,
            Err(FrameError::Truncated)
        );
        assert_eq!(
            read_async(&mut &wire[..3]).await,
            Err(FrameError::Truncated)
        );
        assert_eq!(read_async(&mut &[][..]).await, Ok(None));
        assert_eq!(
            read_async(&mut &wire[..]).await,
            Ok(Some(Frame::Stderr(b"oops".to_vec())))
        );
    }

    #[test]
    fn an_oversize_frame_is_refused_from_its_header() {
        let mut h = vec![STDIN];
        h.extend_from_slice(&(MAX_FRAME as u32 + 1).to_be_bytes());
        let e = FrameError::TooLarge {
            len: MAX_FRAME as u32 + 1,
        };
        assert_eq!(
            Frame::decode(&h),
            Err(e.clone()),
            "no data needed to refuse it"
        );
        assert_eq!(read(&mut &h[..]), Err(e));
        h[1..5].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(
            Frame::decode(&h),
            Err(FrameError::TooLarge { .. })
        ));
    }

    #[test]
    fn unknown_kinds_and_bad_lengths_are_refused() {
        assert_eq!(
            Frame::decode(&[9, 0, 0, 0, 0]),
            Err(FrameError::UnknownKind(9))
        );
        assert_eq!(
            Frame::decode(&[EXIT, 0, 0, 0, 1, 7]),
            Err(FrameError::BadLength {
                what: "exit",
                len: 1,
                want: 4
            })
        );
        assert!(matches!(
            Frame::decode(&[STDIN_EOF, 0, 0, 0, 1, 7]),
            Err(FrameError::BadLength { .. })
        ));
    }

    #[test]
    fn long_data_goes_in_several_frames() {
        let data = vec![7u8; MAX_FRAME * 2 + 10];
        let frames: Vec<Frame> = Frame::chunks(&data, Frame::Stdout).collect();
        assert_eq!(frames.len(), 3);
        let joined: Vec<u8> = frames
            .into_iter()
            .flat_map(|f| match f {
                Frame::Stdout(d) => d,
                _ => unreachable!(),
            })
            .collect();
        assert_eq!(joined, data);
    }
}
