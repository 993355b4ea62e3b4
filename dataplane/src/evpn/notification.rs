//! The NOTIFICATION messages vlnet sends (RFC 4271 §4.5, §6; RFC 6608 for
//! the FSM error subcodes; RFC 4486 for Cease), as plain `(code, subcode,
//! data)` triples with names, and their conversion to the wire type.

use netgauze_bgp_pkt::notification::{
    BgpNotificationMessage, CeaseError, FiniteStateMachineError, HoldTimerExpiredError,
    MessageHeaderError, OpenMessageError, UpdateMessageError,
};
use netgauze_bgp_pkt::BgpMessage;

use super::codec;

/// Error code 1: Message Header Error.
pub const HEADER: u8 = 1;
/// Error code 2: OPEN Message Error.
pub const OPEN: u8 = 2;
/// Error code 3: UPDATE Message Error.
pub const UPDATE: u8 = 3;
/// Error code 4: Hold Timer Expired.
pub const HOLD_TIMER: u8 = 4;
/// Error code 5: Finite State Machine Error.
pub const FSM: u8 = 5;
/// Error code 6: Cease.
pub const CEASE: u8 = 6;

/// A NOTIFICATION: what went wrong, and the data the RFC asks to send back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    /// The error code (one of the constants of this module).
    pub code: u8,
    /// The subcode, whose meaning depends on `code` (0: unspecific).
    pub subcode: u8,
    /// The data field (for example the bad length, or the rejected value).
    pub data: Vec<u8>,
}

impl Notification {
    /// A notification with a data field.
    #[must_use]
    pub fn new(code: u8, subcode: u8, data: impl Into<Vec<u8>>) -> Self {
        Self {
            code,
            subcode,
            data: data.into(),
        }
    }

    /// Hold Timer Expired (4/0).
    #[must_use]
    pub fn hold_timer_expired() -> Self {
        Self::new(HOLD_TIMER, 0, [])
    }

    /// Cease / Administrative Shutdown (6/2).
    #[must_use]
    pub fn admin_shutdown() -> Self {
        Self::new(CEASE, 2, [])
    }

    /// Cease / Out of Resources (6/8, RFC 4486 §4): the neighbor did not
    /// take what was queued for it.
    #[must_use]
    pub fn out_of_resources() -> Self {
        Self::new(CEASE, 8, [])
    }

    /// Cease / Maximum Number of Prefixes Reached (6/1, RFC 4486 §4): the
    /// data is AFI L2VPN, SAFI EVPN and the upper bound.
    #[must_use]
    pub fn max_prefixes(limit: u32) -> Self {
        let mut data = vec![0, 25, 70];
        data.extend(limit.to_be_bytes());
        Self::new(CEASE, 1, data)
    }

    /// An FSM error for a message that may not arrive in the state the
    /// session is in (RFC 6608 subcodes 1–3 for `OpenSent`, `OpenConfirm`,
    /// Established; the data is the message type).
    #[must_use]
    pub fn unexpected(subcode: u8, message_type: u8) -> Self {
        Self::new(FSM, subcode, [message_type])
    }

    /// The code, subcode and data of a NOTIFICATION message, read back from
    /// its encoding (`None` for any other message).
    #[must_use]
    pub fn from_message(message: &BgpMessage) -> Option<Self> {
        if !matches!(message, BgpMessage::Notification(_)) {
            return None;
        }
        let bytes = codec::encode(message).ok()?;
        let (&code, rest) = bytes.get(codec::HEADER_LEN..)?.split_first()?;
        let (&subcode, data) = rest.split_first()?;
        Some(Self::new(code, subcode, data))
    }

    /// The notification as a message to send. Subcodes the wire type has no
    /// name for are sent as the code's unspecific subcode (0).
    #[must_use]
    pub fn to_message(&self) -> BgpMessage {
        let value: Box<[u8]> = self.data.clone().into_boxed_slice();
        let n = match (self.code, self.subcode) {
            (HEADER, 1) => BgpNotificationMessage::MessageHeaderError(
                MessageHeaderError::ConnectionNotSynchronized { value },
            ),
            (HEADER, 2) => {
                BgpNotificationMessage::MessageHeaderError(MessageHeaderError::BadMessageLength {
                    value,
                })
            }
            (HEADER, 3) => {
                BgpNotificationMessage::MessageHeaderError(MessageHeaderError::BadMessageType {
                    value,
                })
            }
            (HEADER, _) => {
                BgpNotificationMessage::MessageHeaderError(MessageHeaderError::Unspecific { value })
            }
            (OPEN, 1) => BgpNotificationMessage::OpenMessageError(
                OpenMessageError::UnsupportedVersionNumber { value },
            ),
            (OPEN, 2) => {
                BgpNotificationMessage::OpenMessageError(OpenMessageError::BadPeerAs { value })
            }
            (OPEN, 3) => {
                BgpNotificationMessage::OpenMessageError(OpenMessageError::BadBgpIdentifier {
                    value,
                })
            }
            (OPEN, 4) => BgpNotificationMessage::OpenMessageError(
                OpenMessageError::UnsupportedOptionalParameter { value },
            ),
            (OPEN, 6) => {
                BgpNotificationMessage::OpenMessageError(OpenMessageError::UnacceptableHoldTime {
                    value,
                })
            }
            (OPEN, 7) => {
                BgpNotificationMessage::OpenMessageError(OpenMessageError::UnsupportedCapability {
                    value,
                })
            }
            (OPEN, _) => {
                BgpNotificationMessage::OpenMessageError(OpenMessageError::Unspecific { value })
            }
            (UPDATE, sub) => BgpNotificationMessage::UpdateMessageError(update_error(sub, value)),
            (HOLD_TIMER, sub) => {
                BgpNotificationMessage::HoldTimerExpiredError(HoldTimerExpiredError::Unspecific {
                    sub_code: sub,
                    value,
                })
            }
            (FSM, 1) => BgpNotificationMessage::FiniteStateMachineError(
                FiniteStateMachineError::ReceiveUnexpectedMessageInOpenSentState { value },
            ),
            (FSM, 2) => BgpNotificationMessage::FiniteStateMachineError(
                FiniteStateMachineError::ReceiveUnexpectedMessageInOpenConfirmState { value },
            ),
            (FSM, 3) => BgpNotificationMessage::FiniteStateMachineError(
                FiniteStateMachineError::ReceiveUnexpectedMessageInEstablishedState { value },
            ),
            (FSM, _) => BgpNotificationMessage::FiniteStateMachineError(
                FiniteStateMachineError::Unspecific { value },
            ),
            (_, 1) => {
                BgpNotificationMessage::CeaseError(CeaseError::MaximumNumberOfPrefixesReached {
                    value,
                })
            }
            (_, 3) => BgpNotificationMessage::CeaseError(CeaseError::PeerDeConfigured { value }),
            (_, 4) => BgpNotificationMessage::CeaseError(CeaseError::AdministrativeReset { value }),
            (_, 8) => BgpNotificationMessage::CeaseError(CeaseError::OutOfResources { value }),
            (_, _) => {
                BgpNotificationMessage::CeaseError(CeaseError::AdministrativeShutdown { value })
            }
        };
        BgpMessage::Notification(n)
    }
}

/// The UPDATE Message Error for a subcode (RFC 4271 §6.3).
fn update_error(subcode: u8, value: Box<[u8]>) -> UpdateMessageError {
    match subcode {
        1 => UpdateMessageError::MalformedAttributeList { value },
        2 => UpdateMessageError::UnrecognizedWellKnownAttribute { value },
        3 => UpdateMessageError::MissingWellKnownAttribute { value },
        4 => UpdateMessageError::AttributeFlagsError { value },
        5 => UpdateMessageError::AttributeLengthError { value },
        6 => UpdateMessageError::InvalidOriginAttribute { value },
        8 => UpdateMessageError::InvalidNextHopAttribute { value },
        9 => UpdateMessageError::OptionalAttributeError { value },
        10 => UpdateMessageError::InvalidNetworkField { value },
        11 => UpdateMessageError::MalformedAsPath { value },
        _ => UpdateMessageError::Unspecific { value },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every notification vlnet sends keeps its code and subcode on the wire.
    #[test]
    fn codes_survive_the_wire() {
        let sent = [
            (HEADER, 1),
            (HEADER, 2),
            (HEADER, 3),
            (OPEN, 1),
            (OPEN, 2),
            (OPEN, 3),
            (OPEN, 4),
            (OPEN, 6),
            (OPEN, 7),
            (UPDATE, 1),
            (UPDATE, 3),
            (UPDATE, 6),
            (UPDATE, 9),
            (UPDATE, 11),
            (HOLD_TIMER, 0),
            (FSM, 1),
            (FSM, 2),
            (FSM, 3),
            (CEASE, 1),
            (CEASE, 2),
            (CEASE, 8),
        ];
        for (code, subcode) in sent {
            let n = Notification::new(code, subcode, [7, 8]);
            let bytes = codec::encode(&n.to_message()).expect("encodes");
            assert_eq!(bytes[18], 3, "type NOTIFICATION");
            assert_eq!((bytes[19], bytes[20]), (code, subcode));
            assert_eq!(&bytes[21..], &[7, 8]);
            assert_eq!(Notification::from_message(&n.to_message()), Some(n));
        }
    }
}
