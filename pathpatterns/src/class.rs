//! Byte sets and the `[...]` character class parser.

use std::fmt;

use crate::error::ParseError;

/// A set of bytes as a 256-bit bitmap.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub(crate) struct ByteSet([u64; 4]);

impl ByteSet {
    /// Every byte.
    pub(crate) const FULL: Self = Self([u64::MAX; 4]);

    /// Every byte except `byte`.
    pub(crate) fn all_but(byte: u8) -> Self {
        let mut set = Self::FULL;
        set.0[usize::from(byte >> 6)] &= !(1u64 << (byte & 63));
        set
    }

    pub(crate) fn insert(&mut self, byte: u8) {
        self.0[usize::from(byte >> 6)] |= 1u64 << (byte & 63);
    }

    /// Inserts `a..=b`, in whichever order the bounds are given.
    pub(crate) fn insert_range(&mut self, a: u8, b: u8) {
        for byte in a.min(b)..=a.max(b) {
            self.insert(byte);
        }
    }

    pub(crate) fn contains(&self, byte: u8) -> bool {
        (self.0[usize::from(byte >> 6)] >> (byte & 63)) & 1 != 0
    }

    fn invert(self) -> Self {
        Self(self.0.map(|word| !word))
    }

    /// Adds the other ASCII case of every letter in the set.
    fn case_closed(mut self) -> Self {
        for byte in b'A'..=b'Z' {
            let lower = byte.to_ascii_lowercase();
            if self.contains(byte) || self.contains(lower) {
                self.insert(byte);
                self.insert(lower);
            }
        }
        self
    }
}

impl fmt::Debug for ByteSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set()
            .entries((0..=255u8).filter(|b| self.contains(*b)))
            .finish()
    }
}

/// The membership test of a POSIX `[:name:]` class.
fn named_class(name: &[u8]) -> Option<fn(u8) -> bool> {
    Some(match name {
        b"alnum" => |b: u8| b.is_ascii_alphanumeric(),
        b"alpha" => |b: u8| b.is_ascii_alphabetic(),
        b"blank" => |b: u8| b == b' ' || b == b'\t',
        b"cntrl" => |b: u8| b < 0x20 || b == 0x7f,
        b"digit" => |b: u8| b.is_ascii_digit(),
        b"graph" => |b: u8| (0x21..=0x7e).contains(&b),
        b"lower" => |b: u8| b.is_ascii_lowercase(),
        // Includes DEL: the reference implementation this must agree with does so.
        b"print" => |b: u8| (0x20..=0x7f).contains(&b),
        b"punct" => |b: u8| b.is_ascii_punctuation(),
        // No vertical tab (0x0B), for the same reason.
        b"space" => |b: u8| matches!(b, b' ' | b'\t' | b'\n' | 0x0c | b'\r'),
        b"upper" => |b: u8| b.is_ascii_uppercase(),
        b"xdigit" => |b: u8| b.is_ascii_hexdigit(),
        _ => return None,
    })
}

/// Reads one member byte at `pos` (`\c` yields `c`); returns the byte and the next position.
fn member_byte(pattern: &[u8], pos: usize, start: usize) -> Result<(u8, usize), ParseError> {
    match pattern.get(pos) {
        None => Err(ParseError::UnclosedClass(start)),
        Some(b'\\') => match pattern.get(pos + 1) {
            None => Err(ParseError::TrailingBackslash),
            Some(&byte) => Ok((byte, pos + 2)),
        },
        Some(&byte) => Ok((byte, pos + 1)),
    }
}

/// Parses the class whose `[` is at `start`; returns the set and the position after its `]`.
///
/// A `]` directly after `[` or `[^` closes the class (an empty set), `[!` is not a negation,
/// and `-` is literal first, after a named class or after a complete range. With `fold`, the
/// set is closed under ASCII case before negation.
pub(crate) fn parse_class(
    pattern: &[u8],
    start: usize,
    fold: bool,
) -> Result<(ByteSet, usize), ParseError> {
    let mut pos = start + 1;
    let negated = pattern.get(pos) == Some(&b'^');
    if negated {
        pos += 1;
    }
    let mut set = ByteSet::default();
    // A `-` is only ever seen here when it is first, follows a named class or follows a
    // complete range (a member followed by `-` is consumed as a range), so it is a member.
    loop {
        let Some(&byte) = pattern.get(pos) else {
            return Err(ParseError::UnclosedClass(start));
        };
        if byte == b']' {
            pos += 1;
            break;
        }
        if byte == b'[' && pattern.get(pos + 1) == Some(&b':') {
            let name_start = pos + 2;
            let name_len = pattern[name_start..]
                .iter()
                .position(|b| *b == b':')
                .ok_or(ParseError::MalformedNamedClass(start))?;
            let name_end = name_start + name_len;
            let test = named_class(&pattern[name_start..name_end])
                .filter(|_| pattern.get(name_end + 1) == Some(&b']'))
                .ok_or(ParseError::MalformedNamedClass(start))?;
            for member in 0..=255u8 {
                if test(member) {
                    set.insert(member);
                }
            }
            pos = name_end + 2;
            continue;
        }
        let (low, next) = member_byte(pattern, pos, start)?;
        pos = next;
        if pattern.get(pos) == Some(&b'-') {
            let (high, next) = member_byte(pattern, pos + 1, start)?;
            pos = next;
            set.insert_range(low, high);
        } else {
            set.insert(low);
        }
    }
    if fold {
        set = set.case_closed();
    }
    Ok((if negated { set.invert() } else { set }, pos))
}
