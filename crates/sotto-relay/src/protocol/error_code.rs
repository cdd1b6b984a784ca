//! The typed error codes of the `Error` frame (docs/relay.md "Error codes").

/// Why the relay refused a request.
///
/// Codes marked *fatal* are followed by the relay closing the connection;
/// the others leave it open for the next request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorCode {
    /// A frame that does not parse (fatal).
    Malformed,
    /// No protocol version in common with the client (fatal).
    UnsupportedVersion,
    /// A length prefix above the relay's maximum frame size (fatal).
    FrameTooLarge,
    /// A request type this protocol version does not define.
    UnknownRequest,
    /// A request that is not allowed at this point, e.g. anything before
    /// `Hello` or a second `Hello` (fatal).
    UnexpectedRequest,
    /// The connection was closed for a deadline: no `Hello` in time, no
    /// useful request from an unauthenticated connection, no request at
    /// all, or a frame that did not arrive completely in time (fatal).
    TimedOut,
    /// The request needs an authenticated connection.
    AuthRequired,
    /// The challenge signature or the identity key was refused (fatal: the
    /// challenge was single-use).
    AuthFailed,
    /// The connection is already authenticated.
    AlreadyAuthenticated,
    /// No prekey bundle is published for that mailbox.
    NotFound,
    /// A prekey upload that is invalid: bad signed-prekey signature or a
    /// repeated one-time prekey id.
    InvalidPreKey,
    /// The upload would store more one-time prekeys than the relay allows.
    TooManyPreKeys,
    /// A device list that is not one, or not the connection's own
    /// account's.
    InvalidDeviceList,
    /// A device list whose version is not higher than the one stored.
    StaleDeviceList,
    /// The recipient's mailbox is over its count or byte limit; nothing was
    /// stored.
    MailboxFull,
    /// An envelope that is empty.
    InvalidEnvelope,
    /// No mailbox at that address: its owner has published no signed
    /// prekey. Nothing was stored.
    UnknownRecipient,
    /// The relay's storage as a whole is at its byte limit; nothing was
    /// stored. Try again later.
    StorageFull,
    /// This connection has had as many envelope bytes stored as one
    /// connection may (fatal: reconnect to send more).
    SendBudgetExceeded,
    /// The sender did not present the recipient's access key (or a wrong
    /// one) and the recipient's first-contact allowance is used up; nothing
    /// was stored. Try again later.
    AccessDenied,
    /// A `SendMulti` naming more recipients than
    /// [`MAX_MULTI_RECIPIENTS`](super::MAX_MULTI_RECIPIENTS); nothing was
    /// stored. Split the recipients over several requests.
    TooManyRecipients,
    /// A `BlobGet` of a blob whose upload is not complete yet: ask
    /// `BlobStatus`, and download once every byte is stored.
    BlobIncomplete,
    /// A `BlobCreate` of more bytes than the relay's `max_blob_size`;
    /// nothing was created.
    BlobTooLarge,
    /// A blob request the relay cannot carry out as asked: a time to live
    /// of 0 or above `max_blob_ttl`, a `BlobPut` past the stored bytes or
    /// past the blob's length. Nothing was changed; a client that lost
    /// track asks `BlobStatus`.
    InvalidBlobRequest,
    /// The relay is at its connection limit (fatal).
    ServerBusy,
    /// The relay is shutting down (fatal).
    ShuttingDown,
    /// The relay could not complete the request (e.g. storage failure);
    /// nothing was changed.
    Internal,
    /// A code this implementation does not know (a newer relay).
    Unrecognized(u16),
}

impl ErrorCode {
    /// The wire value.
    pub fn to_u16(self) -> u16 {
        match self {
            Self::Malformed => 0x0001,
            Self::UnsupportedVersion => 0x0002,
            Self::FrameTooLarge => 0x0003,
            Self::UnknownRequest => 0x0004,
            Self::UnexpectedRequest => 0x0005,
            Self::TimedOut => 0x0006,
            Self::AuthRequired => 0x0010,
            Self::AuthFailed => 0x0011,
            Self::AlreadyAuthenticated => 0x0012,
            Self::NotFound => 0x0020,
            Self::InvalidPreKey => 0x0021,
            Self::TooManyPreKeys => 0x0022,
            Self::InvalidDeviceList => 0x0023,
            Self::StaleDeviceList => 0x0024,
            Self::MailboxFull => 0x0030,
            Self::InvalidEnvelope => 0x0031,
            Self::UnknownRecipient => 0x0032,
            Self::StorageFull => 0x0033,
            Self::SendBudgetExceeded => 0x0034,
            Self::AccessDenied => 0x0035,
            Self::TooManyRecipients => 0x0036,
            Self::BlobIncomplete => 0x0040,
            Self::BlobTooLarge => 0x0041,
            Self::InvalidBlobRequest => 0x0042,
            Self::ServerBusy => 0x00F0,
            Self::ShuttingDown => 0x00F1,
            Self::Internal => 0x00FF,
            Self::Unrecognized(code) => code,
        }
    }

    /// The code for a wire value; unknown values map to
    /// [`ErrorCode::Unrecognized`].
    pub fn from_u16(code: u16) -> Self {
        match code {
            0x0001 => Self::Malformed,
            0x0002 => Self::UnsupportedVersion,
            0x0003 => Self::FrameTooLarge,
            0x0004 => Self::UnknownRequest,
            0x0005 => Self::UnexpectedRequest,
            0x0006 => Self::TimedOut,
            0x0010 => Self::AuthRequired,
            0x0011 => Self::AuthFailed,
            0x0012 => Self::AlreadyAuthenticated,
            0x0020 => Self::NotFound,
            0x0021 => Self::InvalidPreKey,
            0x0022 => Self::TooManyPreKeys,
            0x0023 => Self::InvalidDeviceList,
            0x0024 => Self::StaleDeviceList,
            0x0030 => Self::MailboxFull,
            0x0031 => Self::InvalidEnvelope,
            0x0032 => Self::UnknownRecipient,
            0x0033 => Self::StorageFull,
            0x0034 => Self::SendBudgetExceeded,
            0x0035 => Self::AccessDenied,
            0x0036 => Self::TooManyRecipients,
            0x0040 => Self::BlobIncomplete,
            0x0041 => Self::BlobTooLarge,
            0x0042 => Self::InvalidBlobRequest,
            0x00F0 => Self::ServerBusy,
            0x00F1 => Self::ShuttingDown,
            0x00FF => Self::Internal,
            other => Self::Unrecognized(other),
        }
    }

    /// Whether the relay closes the connection after sending this code.
    pub fn is_fatal(self) -> bool {
        matches!(
            self,
            Self::Malformed
                | Self::UnsupportedVersion
                | Self::FrameTooLarge
                | Self::UnexpectedRequest
                | Self::TimedOut
                | Self::AuthFailed
                | Self::SendBudgetExceeded
                | Self::ServerBusy
                | Self::ShuttingDown
        )
    }
}

impl core::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Unrecognized(code) => write!(f, "error {code:#06x}"),
            known => write!(f, "{known:?}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_round_trips() {
        for code in 0..=0x0100u16 {
            assert_eq!(ErrorCode::from_u16(code).to_u16(), code);
        }
    }

    #[test]
    fn the_storage_codes_have_their_numbers_and_only_the_budget_is_fatal() {
        assert_eq!(ErrorCode::from_u16(0x0032), ErrorCode::UnknownRecipient);
        assert_eq!(ErrorCode::from_u16(0x0033), ErrorCode::StorageFull);
        assert_eq!(ErrorCode::from_u16(0x0034), ErrorCode::SendBudgetExceeded);
        assert!(!ErrorCode::UnknownRecipient.is_fatal());
        assert!(!ErrorCode::StorageFull.is_fatal());
        assert!(ErrorCode::SendBudgetExceeded.is_fatal());
    }

    #[test]
    fn access_denied_is_0x0035_and_not_fatal() {
        assert_eq!(ErrorCode::from_u16(0x0035), ErrorCode::AccessDenied);
        assert_eq!(ErrorCode::AccessDenied.to_u16(), 0x0035);
        assert!(!ErrorCode::AccessDenied.is_fatal());
    }

    #[test]
    fn the_blob_codes_are_0x0040_to_0x0042_and_not_fatal() {
        for (code, value) in [
            (ErrorCode::BlobIncomplete, 0x0040),
            (ErrorCode::BlobTooLarge, 0x0041),
            (ErrorCode::InvalidBlobRequest, 0x0042),
        ] {
            assert_eq!(code.to_u16(), value);
            assert_eq!(ErrorCode::from_u16(value), code);
            assert!(!code.is_fatal());
        }
    }

    #[test]
    fn too_many_recipients_is_0x0036_and_not_fatal() {
        assert_eq!(ErrorCode::from_u16(0x0036), ErrorCode::TooManyRecipients);
        assert_eq!(ErrorCode::TooManyRecipients.to_u16(), 0x0036);
        assert!(!ErrorCode::TooManyRecipients.is_fatal());
    }
}
