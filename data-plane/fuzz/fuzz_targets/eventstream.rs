//! The AWS event-stream decoder and the Bedrock stream translation on arbitrary bytes.
//!
//! Each input is decoded whole, one byte at a time and in chunks derived from the input; all
//! three must agree. It is decoded again with every frame's CRCs recomputed, so that mutations
//! get past the CRC checks into the header decoder and `StreamTranslator`.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tollgate_fuzz::{chunks, splits};
use tollgate_protocol::bedrock::StreamTranslator;
use tollgate_protocol::eventstream::{
    DecodeError, Decoder, MIN_MESSAGE_LEN, Message, PRELUDE_LEN, encode,
};
use tollgate_protocol::sse::SseParser;

/// Message size limit of the decoders here: small, so the limit itself is exercised.
const MAX: usize = 64 * 1024;

#[derive(Debug, PartialEq)]
struct Outcome {
    messages: Vec<Message>,
    end: Result<(), DecodeError>,
}

fn decode(data: &[u8], lens: &[usize]) -> Outcome {
    let mut decoder = Decoder::with_max_message_len(MAX);
    let mut messages = Vec::new();
    for chunk in chunks(data, lens) {
        decoder.push(chunk);
        loop {
            match decoder.next_message() {
                Ok(Some(msg)) => messages.push(msg),
                Ok(None) => break,
                Err(err) => {
                    assert_eq!(decoder.buffered_len(), 0, "a failed decoder keeps no bytes");
                    return Outcome {
                        messages,
                        end: Err(err),
                    };
                }
            }
        }
        // Bounded memory: after draining, at most one incomplete message is buffered.
        assert!(
            decoder.buffered_len() < MAX,
            "{} bytes buffered",
            decoder.buffered_len()
        );
    }
    Outcome {
        messages,
        end: decoder.finish(),
    }
}

/// Every yielded message is the next frame of the input, with both CRCs valid, and encodes back
/// to exactly those bytes.
fn check_frames(data: &[u8], messages: &[Message]) {
    let mut at = 0;
    for msg in messages {
        let total = u32::from_be_bytes(data[at..at + 4].try_into().unwrap()) as usize;
        let frame = &data[at..at + total];
        assert_eq!(
            crc32fast::hash(&frame[..8]).to_be_bytes(),
            frame[8..12],
            "prelude CRC of a yielded message"
        );
        assert_eq!(
            crc32fast::hash(&frame[..total - 4]).to_be_bytes(),
            frame[total - 4..],
            "message CRC of a yielded message"
        );
        // `encode` refuses header values above i16::MAX bytes, which the decoder accepts.
        if let Ok(encoded) = encode(msg) {
            assert_eq!(
                &encoded[..],
                frame,
                "re-encoded message differs from its frame"
            );
        }
        at += total;
    }
}

/// Recomputes the CRCs of every frame whose declared length fits.
fn repair_crcs(data: &[u8]) -> Vec<u8> {
    let mut out = data.to_vec();
    let mut at = 0;
    while out.len() - at >= PRELUDE_LEN {
        let total = u32::from_be_bytes(out[at..at + 4].try_into().unwrap()) as usize;
        let crc = crc32fast::hash(&out[at..at + 8]);
        out[at + 8..at + 12].copy_from_slice(&crc.to_be_bytes());
        if !(MIN_MESSAGE_LEN..=MAX).contains(&total) || out.len() - at < total {
            break;
        }
        let crc = crc32fast::hash(&out[at..at + total - 4]);
        out[at + total - 4..at + total].copy_from_slice(&crc.to_be_bytes());
        at += total;
    }
    out
}

/// Translates the messages as the relay does (stopping at the first error) and checks that the
/// SSE produced parses back into events whose data is a JSON object of that `type`.
fn translate(messages: &[Message]) {
    let mut translator = StreamTranslator::new();
    let mut parser = SseParser::new();
    for msg in messages {
        let done = translator.terminal_error().is_some();
        match translator.on_message(msg) {
            Ok(sse) => {
                if done {
                    assert!(sse.is_empty(), "output after a terminal error");
                }
                parser.push(&sse);
                assert_eq!(parser.buffered_len(), 0, "an SSE frame was left open");
            }
            Err(err) => {
                let _ = err.to_api_error().to_sse();
                break;
            }
        }
    }
    while let Some(event) = parser.next_event() {
        let name = event.event.expect("every translated event is named");
        let json: serde_json::Value =
            serde_json::from_str(&event.data).expect("event data is JSON");
        assert_eq!(json["type"].as_str(), Some(name.as_str()), "{}", event.data);
    }
    let _ = translator.finish();
    let _ = translator.usage();
}

fuzz_target!(|data: &[u8]| {
    let whole = decode(data, &[data.len()]);
    check_frames(data, &whole.messages);
    assert_eq!(decode(data, &vec![1; data.len()]), whole, "byte by byte");
    assert_eq!(
        decode(data, &splits(data, 97)),
        whole,
        "input-derived splits"
    );
    translate(&whole.messages);

    let repaired = repair_crcs(data);
    if repaired != data {
        let outcome = decode(&repaired, &splits(&repaired, 300));
        check_frames(&repaired, &outcome.messages);
        assert!(
            !matches!(
                outcome.end,
                Err(DecodeError::PreludeCrc { .. } | DecodeError::MessageCrc { .. })
            ),
            "CRC error after repair: {:?}",
            outcome.end
        );
        translate(&outcome.messages);
    }
});
