//! Pattern parse errors.

use std::fmt;

/// Why a glob text could not be parsed; `Display` gives the exact user-visible messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParseError {
    /// The glob text was empty.
    Empty,
    /// The glob text contained a NUL byte.
    NulByte,
    /// A `\` was the last byte of the text (also inside a class).
    TrailingBackslash,
    /// A class ran to the end of the text; the value is the offset of its `[`.
    UnclosedClass(usize),
    /// A `[:` inside a class was not a known `[:name:]`; the value is the offset of the
    /// class's `[`.
    MalformedNamedClass(usize),
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("empty pattern"),
            Self::NulByte => f.write_str("null-byte in pattern"),
            Self::TrailingBackslash => f.write_str("trailing backslash in pattern"),
            Self::UnclosedClass(at) => write!(
                f,
                "unclosed character class in pattern, starting at byte {at}"
            ),
            Self::MalformedNamedClass(at) => write!(
                f,
                "malformed named character class in pattern, starting at byte {at}"
            ),
        }
    }
}

impl std::error::Error for ParseError {}
