//! Error type shared by encoder, decoder and accessor.

use std::io;

/// Errors of the pxar encoder, decoder and accessor; decoding errors carry the byte offset.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The underlying reader or writer failed.
    #[error("I/O error at offset {offset}: {source}")]
    Io {
        /// Stream offset of the failed operation.
        offset: u64,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// The archive ended inside an item.
    #[error("truncated archive: {what} at offset {offset} is incomplete")]
    Truncated {
        /// Offset of the first missing byte's item.
        offset: u64,
        /// What was being read.
        what: String,
    },
    /// The archive content violates the format.
    #[error("corrupt archive at offset {offset}: {msg}")]
    Corrupt {
        /// Offset of the offending item.
        offset: u64,
        /// What is wrong.
        msg: String,
    },
    /// The encoder or accessor was called with arguments the format cannot represent.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// An earlier write error left the encoder in an inconsistent state.
    #[error("encoder unusable after an earlier error")]
    Poisoned,
}

impl Error {
    /// Byte offset the error refers to, if any.
    pub fn offset(&self) -> Option<u64> {
        match self {
            Error::Io { offset, .. }
            | Error::Truncated { offset, .. }
            | Error::Corrupt { offset, .. } => Some(*offset),
            Error::InvalidInput(_) | Error::Poisoned => None,
        }
    }

    /// Recover the archive error wrapped in an `io::Error` returned by a contents reader;
    /// other I/O errors become `Io` at `offset`.
    pub fn from_io(err: io::Error, offset: u64) -> Self {
        if err.get_ref().is_some_and(|inner| inner.is::<Error>()) {
            if let Some(inner) = err.into_inner() {
                if let Ok(inner) = inner.downcast::<Error>() {
                    return *inner;
                }
            }
            return Error::Poisoned;
        }
        Error::Io {
            offset,
            source: err,
        }
    }

    pub(crate) fn corrupt(offset: u64, msg: impl Into<String>) -> Self {
        Error::Corrupt {
            offset,
            msg: msg.into(),
        }
    }

    pub(crate) fn invalid(msg: impl Into<String>) -> Self {
        Error::InvalidInput(msg.into())
    }

    /// Map a read error: EOF becomes `Truncated`, anything else `Io`.
    pub(crate) fn read(offset: u64, what: &str, err: io::Error) -> Self {
        if err.kind() == io::ErrorKind::UnexpectedEof {
            Error::Truncated {
                offset,
                what: what.to_string(),
            }
        } else {
            Error::Io {
                offset,
                source: err,
            }
        }
    }
}

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
