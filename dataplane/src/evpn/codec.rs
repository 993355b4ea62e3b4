//! BGP messages on the wire: splitting a TCP byte stream into messages,
//! decoding one (with `netgauze-bgp-pkt`) and encoding one.
//!
//! Decoding never panics on any input (property-tested below and in the
//! session's tests); a message that does not decode comes back as a
//! [`DecodeError`] holding the NOTIFICATION to answer with (RFC 4271 §6, as
//! netgauze maps its parse errors), or none for a bad NOTIFICATION, which is
//! never answered (§6.4: the connection just closes).

use std::collections::HashMap;

use netgauze_bgp_pkt::notification::BgpNotificationMessage;
use netgauze_bgp_pkt::wire::deserializer::{BgpMessageParsingError, BgpParsingContext};
use netgauze_bgp_pkt::wire::serializer::BgpMessageWritingError;
use netgauze_bgp_pkt::BgpMessage;
use netgauze_parse_utils::reader::SliceReader;
use netgauze_parse_utils::traits::ParseFromWithOneInput;
use netgauze_parse_utils::WritablePdu;

use super::notification::{self, Notification};

/// The length of a message header: marker (16), length (2), type (1).
pub const HEADER_LEN: usize = 19;
/// The longest message without the Extended Message capability (RFC 4271
/// §4.1), which vlnet does not advertise.
pub const MAX_MESSAGE_LEN: usize = 4096;

/// A message that did not decode, and what to answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed BGP message: {reason}")]
pub struct DecodeError {
    /// What the decoder found wrong.
    pub reason: String,
    /// The NOTIFICATION to send before closing; `None` when the bad message
    /// was itself a NOTIFICATION.
    pub answer: Option<Notification>,
}

/// A message that could not be encoded (a bug in what vlnet built: too
/// long, or a field out of range).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot encode BGP message: {0}")]
pub struct EncodeError(String);

/// How long the next message at the start of `buf` is, once its header is
/// in: `Ok(None)` until 19 bytes have arrived. A header with a bad marker
/// or length is answered with a Message Header Error (1/1 or 1/2, data the
/// bad length).
pub fn frame_len(buf: &[u8]) -> Result<Option<usize>, Notification> {
    let Some(header) = buf.get(..HEADER_LEN) else {
        return Ok(None);
    };
    if header[..16].iter().any(|&b| b != 0xff) {
        return Err(Notification::new(notification::HEADER, 1, []));
    }
    let len = u16::from_be_bytes([header[16], header[17]]);
    if usize::from(len) < HEADER_LEN || usize::from(len) > MAX_MESSAGE_LEN {
        return Err(Notification::new(
            notification::HEADER,
            2,
            len.to_be_bytes(),
        ));
    }
    Ok(Some(usize::from(len)))
}

/// Decodes one whole message (as [`frame_len`] delimits it). `asn4` says
/// whether both sides announced 4-octet AS numbers (RFC 6793), which
/// changes how `AS_PATH` is read.
pub fn decode(frame: &[u8], asn4: bool) -> Result<BgpMessage, DecodeError> {
    let mut ctx =
        BgpParsingContext::new(asn4, HashMap::new(), HashMap::new(), true, true, true, true);
    let mut reader = SliceReader::new(frame);
    let message = BgpMessage::parse(&mut reader, &mut ctx).map_err(|e| DecodeError {
        reason: e.to_string(),
        answer: answer(e),
    })?;
    if reader.remaining() != 0 {
        // The header's length is shorter than the frame: the framing and the
        // message disagree.
        return Err(DecodeError {
            reason: format!("{} bytes after the message", reader.remaining()),
            answer: Some(Notification::new(notification::HEADER, 2, [])),
        });
    }
    Ok(message)
}

/// Encodes a message.
pub fn encode(message: &BgpMessage) -> Result<Vec<u8>, EncodeError> {
    let mut out = Vec::with_capacity(message.len());
    message
        .write(&mut out)
        .map_err(|e: BgpMessageWritingError| EncodeError(e.to_string()))?;
    Ok(out)
}

/// The NOTIFICATION answering a parse error.
fn answer(error: BgpMessageParsingError) -> Option<Notification> {
    if matches!(
        error,
        BgpMessageParsingError::BgpNotificationMessageParsingError(_)
    ) {
        return None;
    }
    let message = BgpMessage::Notification(BgpNotificationMessage::from(error));
    Some(
        Notification::from_message(&message)
            .unwrap_or_else(|| Notification::new(notification::HEADER, 0, [])),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn header(len: u16, kind: u8) -> Vec<u8> {
        let mut h = vec![0xff; 16];
        h.extend_from_slice(&len.to_be_bytes());
        h.push(kind);
        h
    }

    #[test]
    fn frames_wait_for_a_whole_header() {
        let h = header(19, 4);
        assert_eq!(frame_len(&h[..18]), Ok(None));
        assert_eq!(frame_len(&h), Ok(Some(19)));
    }

    #[test]
    fn a_bad_marker_is_not_synchronized() {
        let mut h = header(19, 4);
        h[3] = 0;
        assert_eq!(frame_len(&h).map_err(|n| (n.code, n.subcode)), Err((1, 1)));
    }

    #[test]
    fn a_bad_length_is_answered_with_the_length() {
        for len in [0u16, 18, 4097, u16::MAX] {
            let n = frame_len(&header(len, 2)).expect_err("bad length");
            assert_eq!((n.code, n.subcode), (1, 2));
            assert_eq!(n.data, len.to_be_bytes());
        }
    }

    #[test]
    fn keepalive_round_trips() {
        let bytes = encode(&BgpMessage::KeepAlive).expect("encodes");
        assert_eq!(bytes, header(19, 4));
        assert_eq!(decode(&bytes, true), Ok(BgpMessage::KeepAlive));
    }

    #[test]
    fn an_unknown_type_is_a_bad_message_type() {
        let e = decode(&header(19, 9), true).expect_err("type 9");
        let n = e.answer.expect("answered");
        assert_eq!((n.code, n.subcode, n.data), (1, 3, vec![9]));
    }

    #[test]
    fn a_bad_notification_is_not_answered() {
        // NOTIFICATION with no code.
        let e = decode(&header(19, 3), true).expect_err("too short");
        assert_eq!(e.answer, None);
    }

    #[test]
    fn a_keepalive_with_a_body_is_a_bad_length() {
        let mut m = header(20, 4);
        m.push(0);
        let n = decode(&m, true)
            .expect_err("long keepalive")
            .answer
            .expect("answered");
        assert_eq!((n.code, n.subcode), (1, 2));
    }

    proptest! {
        /// No byte string panics the framing or the decoder, whatever
        /// header it carries, and what decodes encodes again.
        #[test]
        fn arbitrary_bytes_never_panic(kind in 0u8..8, body in proptest::collection::vec(any::<u8>(), 0..300), asn4: bool) {
            let mut m = header(u16::try_from(HEADER_LEN + body.len()).unwrap_or(u16::MAX), kind);
            m.extend_from_slice(&body);
            let _ = frame_len(&m);
            if let Ok(message) = decode(&m, asn4) {
                prop_assert!(encode(&message).is_ok());
            }
        }

        /// Truly arbitrary bytes, with no well-formed header at all.
        #[test]
        fn arbitrary_frames_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = frame_len(&bytes);
            let _ = decode(&bytes, true);
        }
    }
}
