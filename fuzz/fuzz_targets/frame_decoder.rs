//! Arbitrary bytes, split into arbitrary chunks, through the frame decoder and every
//! message decoder: nothing may panic, and no frame body may exceed the cap.
#![no_main]

use libfuzzer_sys::fuzz_target;
use p2pchat_core::frame::{FrameDecoder, MAX_FRAME_BODY, decode_body};
use p2pchat_core::peer_wire::PeerFrame;
use p2pchat_core::registry::{ClientMessage, ServerMessage};

fuzz_target!(|data: &[u8]| {
    let Some((&split, rest)) = data.split_first() else { return };
    let chunk = usize::from(split).max(1);
    let mut decoder = FrameDecoder::new();
    for mut piece in rest.chunks(chunk) {
        loop {
            match decoder.decode(&mut piece) {
                Ok(Some(body)) => {
                    assert!(body.len() <= MAX_FRAME_BODY);
                    let _ = decode_body::<PeerFrame>(&body);
                    let _ = decode_body::<ClientMessage>(&body);
                    let _ = decode_body::<ServerMessage>(&body);
                }
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
});
