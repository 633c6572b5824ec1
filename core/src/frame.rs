//! Length-prefixed, versioned postcard frames and their incremental decoder.
//!
//! On the wire a frame is `len: u32 big-endian` followed by `len` bytes of body; the body is
//! one version byte ([`WIRE_VERSION`]) followed by a postcard-encoded message. `len` is at
//! least 1 and at most [`MAX_FRAME_BODY`]. The decoder never buffers more than one frame.

use serde::{Serialize, de::DeserializeOwned};

/// The wire version this build speaks.
pub const WIRE_VERSION: u8 = 3;

/// Hard cap on a frame body (version byte included), in bytes.
pub const MAX_FRAME_BODY: usize = 64 * 1024;

/// Size of the length prefix.
pub const LENGTH_PREFIX: usize = 4;

/// Why bytes could not be read as a frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The length prefix announced a body larger than the decoder's limit.
    #[error("frame of {0} bytes exceeds the size limit")]
    TooLarge(usize),
    /// The length prefix announced an empty body.
    #[error("empty frame")]
    Empty,
    /// The body's version byte is not one this build speaks.
    #[error("unsupported wire version {0} (this build speaks version {WIRE_VERSION})")]
    UnsupportedVersion(u8),
    /// The body is not a valid encoding of the expected message.
    #[error("malformed message")]
    Malformed,
    /// A message to send encodes larger than [`MAX_FRAME_BODY`].
    #[error("message too large to send")]
    EncodeTooLarge,
}

/// Encodes `message` as one complete frame (prefix, version, postcard body).
pub fn encode_frame<T: Serialize>(message: &T) -> Result<Vec<u8>, FrameError> {
    let mut out = vec![0u8; LENGTH_PREFIX];
    out.push(WIRE_VERSION);
    let mut out = postcard::to_extend(message, out).map_err(|_| FrameError::EncodeTooLarge)?;
    let body_len = out.len() - LENGTH_PREFIX;
    if body_len > MAX_FRAME_BODY {
        return Err(FrameError::EncodeTooLarge);
    }
    let prefix = u32::try_from(body_len).map_err(|_| FrameError::EncodeTooLarge)?;
    out[..LENGTH_PREFIX].copy_from_slice(&prefix.to_be_bytes());
    Ok(out)
}

/// Decodes a frame body (version byte plus postcard message), rejecting trailing bytes.
pub fn decode_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, FrameError> {
    let (&version, rest) = body.split_first().ok_or(FrameError::Empty)?;
    if version != WIRE_VERSION {
        return Err(FrameError::UnsupportedVersion(version));
    }
    match postcard::take_from_bytes::<T>(rest) {
        Ok((message, [])) => Ok(message),
        _ => Err(FrameError::Malformed),
    }
}

/// The first whole frame in `bytes`, decoded: `None` if there is none, or it does not
/// decode as a `T` (for tests and simulations that read what a peer answered).
pub fn decode_first<T: DeserializeOwned>(mut bytes: &[u8]) -> Option<T> {
    FrameDecoder::new()
        .decode(&mut bytes)
        .ok()
        .flatten()
        .and_then(|body| decode_body(&body).ok())
}

/// Incremental frame splitter: feed it bytes split anywhere, take whole frame bodies out.
///
/// Memory is bounded: at most one frame's prefix and body are held at a time.
#[derive(Debug)]
pub struct FrameDecoder {
    limit: usize,
    prefix: [u8; LENGTH_PREFIX],
    prefix_len: usize,
    /// The body under construction, once its length is known.
    body: Option<(usize, Vec<u8>)>,
}

impl Default for FrameDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl FrameDecoder {
    /// A decoder expecting the start of a frame, accepting bodies up to [`MAX_FRAME_BODY`].
    pub fn new() -> Self {
        Self::with_limit(MAX_FRAME_BODY)
    }

    /// A decoder accepting bodies up to `limit` bytes (never more than [`MAX_FRAME_BODY`]):
    /// a side that only ever expects small messages need not buffer 64 KiB per connection.
    pub fn with_limit(limit: usize) -> Self {
        Self {
            limit: limit.min(MAX_FRAME_BODY),
            prefix: [0; LENGTH_PREFIX],
            prefix_len: 0,
            body: None,
        }
    }

    /// Consumes bytes from the front of `input` until one whole frame body is read (returned)
    /// or `input` is empty (`Ok(None)`). Call again with the rest of `input` for more frames.
    ///
    /// After an error the stream is out of sync; the connection must be dropped.
    pub fn decode(&mut self, input: &mut &[u8]) -> Result<Option<Vec<u8>>, FrameError> {
        if self.body.is_none() {
            let want = LENGTH_PREFIX - self.prefix_len;
            let take = want.min(input.len());
            self.prefix[self.prefix_len..self.prefix_len + take].copy_from_slice(&input[..take]);
            self.prefix_len += take;
            *input = &input[take..];
            if self.prefix_len < LENGTH_PREFIX {
                return Ok(None);
            }
            let len = u32::from_be_bytes(self.prefix) as usize;
            if len == 0 {
                return Err(FrameError::Empty);
            }
            if len > self.limit {
                return Err(FrameError::TooLarge(len));
            }
            // Grow the buffer only as bytes arrive, so a lying prefix costs nothing.
            self.body = Some((len, Vec::new()));
        }
        let Some((len, body)) = self.body.as_mut() else {
            return Ok(None);
        };
        let take = (*len - body.len()).min(input.len());
        body.extend_from_slice(&input[..take]);
        *input = &input[take..];
        if body.len() < *len {
            return Ok(None);
        }
        self.prefix_len = 0;
        Ok(self.body.take().map(|(_, body)| body))
    }

    /// True when no partial frame is buffered.
    pub fn is_idle(&self) -> bool {
        self.prefix_len == 0 && self.body.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde::Deserialize;

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    enum Sample {
        Text(String),
        Bytes(Vec<u8>),
        Pair(u64, bool),
    }

    fn sample() -> impl Strategy<Value = Sample> {
        prop_oneof![
            ".{0,40}".prop_map(Sample::Text),
            proptest::collection::vec(any::<u8>(), 0..300).prop_map(Sample::Bytes),
            (any::<u64>(), any::<bool>()).prop_map(|(a, b)| Sample::Pair(a, b)),
        ]
    }

    fn decode_all(decoder: &mut FrameDecoder, mut input: &[u8]) -> Vec<Sample> {
        let mut out = Vec::new();
        while let Some(body) = decoder.decode(&mut input).unwrap() {
            out.push(decode_body(&body).unwrap());
        }
        assert!(input.is_empty());
        out
    }

    #[test]
    fn oversize_length_prefix_is_rejected_before_any_allocation() {
        let mut d = FrameDecoder::new();
        let bytes = (MAX_FRAME_BODY as u32 + 1).to_be_bytes();
        assert_eq!(
            d.decode(&mut &bytes[..]),
            Err(FrameError::TooLarge(MAX_FRAME_BODY + 1))
        );
    }

    #[test]
    fn a_smaller_limit_rejects_frames_above_it() {
        let mut d = FrameDecoder::with_limit(10);
        assert_eq!(
            d.decode(&mut &11u32.to_be_bytes()[..]),
            Err(FrameError::TooLarge(11))
        );
        let mut d = FrameDecoder::with_limit(usize::MAX);
        let too_big = (MAX_FRAME_BODY as u32 + 1).to_be_bytes();
        assert!(d.decode(&mut &too_big[..]).is_err());
    }

    #[test]
    fn empty_frame_is_rejected() {
        let mut d = FrameDecoder::new();
        assert_eq!(d.decode(&mut &[0, 0, 0, 0][..]), Err(FrameError::Empty));
    }

    #[test]
    fn unknown_version_is_reported_as_such() {
        assert_eq!(
            decode_body::<Sample>(&[9, 0]),
            Err(FrameError::UnsupportedVersion(9))
        );
    }

    #[test]
    fn trailing_bytes_after_a_message_are_malformed() {
        let mut frame = encode_frame(&Sample::Pair(1, true)).unwrap();
        frame.push(0);
        assert_eq!(
            decode_body::<Sample>(&frame[LENGTH_PREFIX..]),
            Err(FrameError::Malformed)
        );
    }

    #[test]
    fn encoding_refuses_messages_over_the_cap() {
        let big = Sample::Bytes(vec![7; MAX_FRAME_BODY]);
        assert_eq!(encode_frame(&big), Err(FrameError::EncodeTooLarge));
    }

    proptest! {
        #[test]
        fn round_trip_many_frames_in_one_chunk(msgs in proptest::collection::vec(sample(), 0..8)) {
            let mut wire = Vec::new();
            for m in &msgs {
                wire.extend(encode_frame(m).unwrap());
            }
            let mut d = FrameDecoder::new();
            prop_assert_eq!(decode_all(&mut d, &wire), msgs);
            prop_assert!(d.is_idle());
        }

        #[test]
        fn a_stream_split_at_every_position_decodes_the_same(msgs in proptest::collection::vec(sample(), 1..4)) {
            let mut wire = Vec::new();
            for m in &msgs {
                wire.extend(encode_frame(m).unwrap());
            }
            for split in 0..=wire.len() {
                let mut d = FrameDecoder::new();
                let mut got = decode_all(&mut d, &wire[..split]);
                got.extend(decode_all(&mut d, &wire[split..]));
                prop_assert_eq!(&got, &msgs);
            }
        }

        #[test]
        fn byte_at_a_time_decodes_the_same(msgs in proptest::collection::vec(sample(), 1..4)) {
            let mut wire = Vec::new();
            for m in &msgs {
                wire.extend(encode_frame(m).unwrap());
            }
            let mut d = FrameDecoder::new();
            let mut got = Vec::new();
            for b in &wire {
                got.extend(decode_all(&mut d, std::slice::from_ref(b)));
            }
            prop_assert_eq!(got, msgs);
        }

        #[test]
        fn arbitrary_bytes_never_panic_and_never_exceed_the_cap(bytes in proptest::collection::vec(any::<u8>(), 0..2000)) {
            let mut d = FrameDecoder::new();
            let mut input = &bytes[..];
            while let Ok(Some(body)) = d.decode(&mut input) {
                prop_assert!(body.len() <= MAX_FRAME_BODY);
                let _ = decode_body::<Sample>(&body);
            }
        }
    }
}
