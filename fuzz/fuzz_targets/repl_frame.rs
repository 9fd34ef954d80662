//! Fuzz target: arbitrary bytes as a stream of kv-replication frames, decoded two ways:
//! with `decode_frame` repeatedly over the buffer, and with a `FrameReader` over the
//! same bytes. Never a panic; both decoders must see the same messages and stop at the
//! same place for the same kind of reason; every decoded message must re-encode to a
//! frame that decodes to the same message, and every strict prefix of that frame must
//! be "not yet a frame".
//!
//! Input: the first byte picks the frame size limit (so oversized headers are hit at
//! several limits), the rest is the stream.
#![no_main]

use kv_replication::{Error, FRAME_HEADER_LEN, FrameReader, Message, decode_frame, encode_frame};
use libfuzzer_sys::fuzz_target;

/// The frame size limit picked by the flags byte. `FrameReader` allocates the announced
/// length before reading, so the limits stay small enough for fast runs.
fn max_frame(flags: u8) -> usize {
    match flags & 3 {
        0 | 1 => 1 << 20,
        2 => 4096,
        // 0 to 252 bytes: most real messages no longer fit.
        _ => usize::from(flags >> 2) * 4,
    }
}

/// Why a decoder stopped.
#[derive(Debug, PartialEq, Eq)]
enum Stop {
    /// The stream ended inside a frame (or exactly at a frame boundary).
    Incomplete,
    /// A frame was refused (oversized, checksum, malformed message).
    Refused,
}

fn check_round_trip(msg: &Message) {
    let frame = encode_frame(msg).expect("a decoded message encodes");
    let len = u32::from_le_bytes(frame[..4].try_into().expect("4 bytes")) as usize;
    assert_eq!(frame.len(), FRAME_HEADER_LEN + len, "header length field");
    let (again, used) = decode_frame(&frame, usize::MAX)
        .expect("an encoded message decodes")
        .expect("a whole frame");
    assert_eq!(&again, msg, "round trip changed the message");
    assert_eq!(used, frame.len());
    for cut in [
        0,
        1,
        FRAME_HEADER_LEN - 1,
        FRAME_HEADER_LEN,
        frame.len() - 1,
    ] {
        if cut < frame.len() {
            assert_eq!(
                decode_frame(&frame[..cut], usize::MAX).expect("a prefix is no error"),
                None,
                "a {cut}-byte prefix of a {}-byte frame decoded",
                frame.len()
            );
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, stream)) = data.split_first() else {
        return;
    };
    let max = max_frame(flags);

    // decode_frame, frame after frame.
    let mut by_slice = Vec::new();
    let mut pos = 0usize;
    let slice_stop = loop {
        let rest = &stream[pos..];
        match decode_frame(rest, max) {
            Ok(Some((msg, used))) => {
                assert!(
                    used >= FRAME_HEADER_LEN && used <= rest.len(),
                    "used {used}"
                );
                assert!(used - FRAME_HEADER_LEN <= max, "over the limit");
                check_round_trip(&msg);
                by_slice.push(msg);
                pos += used;
            }
            Ok(None) => {
                // Only when the bytes really end inside a frame.
                if rest.len() >= FRAME_HEADER_LEN {
                    let len = u32::from_le_bytes(rest[..4].try_into().expect("4")) as usize;
                    assert!(rest.len() < FRAME_HEADER_LEN + len, "a whole frame unread");
                }
                break Stop::Incomplete;
            }
            Err(detail) => {
                assert!(!detail.is_empty());
                break Stop::Refused;
            }
        }
    };

    // FrameReader over the same bytes: the same messages, stopped the same way.
    let mut reader = FrameReader::new(stream, "fuzz", max);
    let mut by_reader = Vec::new();
    let reader_stop = loop {
        match reader.read() {
            Ok(msg) => by_reader.push(msg),
            Err(Error::Io { source, .. }) => {
                assert_eq!(source.kind(), std::io::ErrorKind::UnexpectedEof);
                break Stop::Incomplete;
            }
            Err(Error::Protocol { offset, .. }) => {
                assert_eq!(offset, pos as u64, "damage located at the frame's start");
                break Stop::Refused;
            }
            Err(other) => panic!("unexpected error from a byte slice: {other}"),
        }
    };
    assert_eq!(by_reader, by_slice);
    assert_eq!(reader.offset(), pos as u64);
    // The reader reads a header before checking it, so a truncated oversized header is
    // "incomplete" to it but refused by decode_frame only once 8 bytes are there: both
    // need the whole header, so they agree.
    assert_eq!(reader_stop, slice_stop);
});
