//! Frames: how the binary protocol cuts a byte stream into messages, in both directions.
//!
//! Every frame is a 9-byte header followed by a payload:
//!
//! ```text
//! offset  size  field
//!      0     4  length      u32, big-endian: the bytes that follow this field (5 + payload),
//!                           at least 5 and at most `max_frame_bytes - 4`
//!      4     1  version     u8, the protocol version (1)
//!      5     4  request id  u32, big-endian: chosen by the client, echoed by the server's
//!                           answer; 0 is the connection itself (the server's last word
//!                           before it closes: a protocol error, the idle timeout, shutdown)
//!      9     …  payload     bincode 2 (serde, standard configuration) of a `Request` (client
//!                           to server) or a `Response` (server to client), see `messages`
//! ```
//!
//! The length comes first so that a reader knows how much to wait for, and can refuse an
//! oversized frame from its first four bytes without buffering it. The decoder never panics on
//! any input (a proptest in this module's tests feeds it arbitrary bytes).

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Bytes of the length prefix.
pub const LENGTH_BYTES: usize = 4;
/// Bytes of the whole header: length, version and request id.
pub const HEADER_BYTES: usize = LENGTH_BYTES + 1 + 4;
/// The largest frame (header included) a server accepts by default: requests are small (an item,
/// a few anchors, at most a client's RSA public key).
pub const DEFAULT_MAX_REQUEST_FRAME_BYTES: usize = 64 * 1024;
/// The largest frame (header included) a client accepts by default: answers carry tokens (a JWE
/// of a token is about 2 KiB) and the JWKS.
pub const DEFAULT_MAX_RESPONSE_FRAME_BYTES: usize = 1024 * 1024;

/// One frame, as read off the wire or about to be written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The sender's protocol version.
    pub version: u8,
    /// The request this frame asks or answers (0: the connection itself).
    pub request_id: u32,
    /// The bincode-encoded message.
    pub payload: Bytes,
}

/// Why the bytes on a connection are not a frame. After any of these the stream cannot be
/// resynchronized: the connection is answered with a protocol error and closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The length prefix announces more than the limit.
    #[error("frame of {frame_bytes} bytes is larger than the limit of {max_frame_bytes} bytes")]
    TooLarge {
        /// The announced size, header included.
        frame_bytes: u64,
        /// The limit, header included.
        max_frame_bytes: usize,
    },
    /// The length prefix is too small to hold the version and the request id.
    #[error("frame length {0} is shorter than the 5 bytes of version and request id")]
    TooShort(u32),
}

/// Takes the next whole frame off the front of `buf`, if one is there; `Ok(None)` means "read
/// more bytes". A frame larger than `max_frame_bytes` (header included) is refused as soon as its
/// length prefix is in.
pub fn decode(buf: &mut BytesMut, max_frame_bytes: usize) -> Result<Option<Frame>, FrameError> {
    let Some(prefix) = buf.get(..LENGTH_BYTES) else { return Ok(None) };
    let length = u32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]);
    let frame_bytes = u64::from(length) + LENGTH_BYTES as u64;
    if frame_bytes > max_frame_bytes as u64 {
        return Err(FrameError::TooLarge { frame_bytes, max_frame_bytes });
    }
    if (length as usize) < HEADER_BYTES - LENGTH_BYTES {
        return Err(FrameError::TooShort(length));
    }
    // `frame_bytes` fits a usize: it is at most `max_frame_bytes`.
    let frame_bytes = LENGTH_BYTES + length as usize;
    if buf.len() < frame_bytes {
        buf.reserve(frame_bytes - buf.len());
        return Ok(None);
    }
    let mut frame = buf.split_to(frame_bytes);
    frame.advance(LENGTH_BYTES);
    let version = frame.get_u8();
    let request_id = frame.get_u32();
    Ok(Some(Frame { version, request_id, payload: frame.freeze() }))
}

/// Appends the frame of `payload` to `dst`. Panics if the payload cannot be described by a u32
/// length, which the callers' message bounds rule out.
pub fn encode(version: u8, request_id: u32, payload: &[u8], dst: &mut BytesMut) {
    let length = u32::try_from(HEADER_BYTES - LENGTH_BYTES + payload.len())
        .expect("a payload is far smaller than 4 GiB (messages are bounded)");
    dst.reserve(HEADER_BYTES + payload.len());
    dst.put_u32(length);
    dst.put_u8(version);
    dst.put_u32(request_id);
    dst.put_slice(payload);
}

/// Appends a frame to `dst` whose payload `write_payload` appends in place (no intermediate
/// buffer); on its error, `dst` is left as it was. Panics if the payload cannot be described by a
/// u32 length, which the callers' message bounds rule out.
pub fn encode_with<E>(
    version: u8,
    request_id: u32,
    dst: &mut BytesMut,
    write_payload: impl FnOnce(&mut BytesMut) -> Result<(), E>,
) -> Result<(), E> {
    let start = dst.len();
    dst.put_u32(0);
    dst.put_u8(version);
    dst.put_u32(request_id);
    if let Err(e) = write_payload(dst) {
        dst.truncate(start);
        return Err(e);
    }
    let length = u32::try_from(dst.len() - start - LENGTH_BYTES)
        .expect("a payload is far smaller than 4 GiB (messages are bounded)");
    dst[start..start + LENGTH_BYTES].copy_from_slice(&length.to_be_bytes());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn framed(version: u8, id: u32, payload: &[u8]) -> BytesMut {
        let mut buf = BytesMut::new();
        encode(version, id, payload, &mut buf);
        buf
    }

    #[test]
    fn a_frame_round_trips_with_its_documented_layout() {
        let buf = framed(1, 0x0102_0304, b"abc");
        assert_eq!(&buf[..], &[0, 0, 0, 8, 1, 1, 2, 3, 4, b'a', b'b', b'c']);
        let mut buf = buf;
        let frame = decode(&mut buf, 64).unwrap().unwrap();
        assert_eq!(frame, Frame { version: 1, request_id: 0x0102_0304, payload: Bytes::from_static(b"abc") });
        assert!(buf.is_empty());
    }

    #[test]
    fn a_frame_written_in_place_is_the_frame_of_its_payload() {
        let mut buf = BytesMut::from(&b"before"[..]);
        encode_with(1, 7, &mut buf, |dst| -> Result<(), ()> {
            dst.put_slice(b"hello");
            Ok(())
        })
        .unwrap();
        let mut expected = BytesMut::from(&b"before"[..]);
        encode(1, 7, b"hello", &mut expected);
        assert_eq!(buf, expected);
    }

    #[test]
    fn a_payload_that_fails_to_write_leaves_no_trace() {
        let mut buf = BytesMut::from(&b"before"[..]);
        let failed = encode_with(1, 7, &mut buf, |dst| {
            dst.put_slice(b"half a payload");
            Err("no")
        });
        assert_eq!(failed, Err("no"));
        assert_eq!(&buf[..], b"before");
    }

    #[test]
    fn a_partial_frame_waits_for_more_bytes() {
        let whole = framed(1, 7, b"hello");
        for cut in 0..whole.len() {
            let mut part = BytesMut::from(&whole[..cut]);
            assert_eq!(decode(&mut part, 64), Ok(None), "cut at {cut}");
            assert_eq!(part.len(), cut, "nothing is consumed from a partial frame");
        }
    }

    #[test]
    fn an_oversized_frame_is_refused_from_its_length_prefix_alone() {
        let mut buf = BytesMut::from(&[0x00, 0x01, 0x00, 0x00][..]);
        assert_eq!(decode(&mut buf, 1024), Err(FrameError::TooLarge { frame_bytes: 65540, max_frame_bytes: 1024 }));
    }

    #[test]
    fn a_length_too_short_for_the_header_is_refused() {
        let mut buf = BytesMut::from(&[0, 0, 0, 4, 1, 0, 0, 0][..]);
        assert_eq!(decode(&mut buf, 1024), Err(FrameError::TooShort(4)));
    }

    #[test]
    fn back_to_back_frames_come_out_in_order() {
        let mut buf = framed(1, 1, b"a");
        buf.extend_from_slice(&framed(1, 2, b""));
        buf.extend_from_slice(&framed(1, 3, b"ccc"));
        let ids: Vec<u32> = std::iter::from_fn(|| decode(&mut buf, 64).unwrap()).map(|f| f.request_id).collect();
        assert_eq!(ids, [1, 2, 3]);
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2048, ..ProptestConfig::default() })]

        /// Whatever arrives, in whatever pieces, decoding ends in frames, a wait or an error;
        /// never a panic, and never a frame over the limit.
        #[test]
        fn arbitrary_bytes_never_panic_the_decoder(
            bytes in proptest::collection::vec(any::<u8>(), 0..512),
            max in 9usize..256,
            chunk in 1usize..64,
        ) {
            let mut buf = BytesMut::new();
            'feed: for piece in bytes.chunks(chunk) {
                buf.extend_from_slice(piece);
                loop {
                    match decode(&mut buf, max) {
                        Ok(Some(frame)) => prop_assert!(frame.payload.len() + HEADER_BYTES <= max),
                        Ok(None) => break,
                        Err(_) => break 'feed,
                    }
                }
            }
        }
    }
}
