//! Glob patterns on byte strings with wildmatch semantics.
//!
//! A pattern is compiled into a token list once; matching simulates the token automaton over
//! the text (all possible positions at once), so it never backtracks and runs in
//! O(text length × pattern length) without allocating for patterns of up to 255 tokens.

use std::fmt;
use std::ops::{BitOr, BitOrAssign};

use crate::class::{parse_class, ByteSet};
use crate::error::ParseError;

/// Options of a [`Pattern`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct PatternFlag(u8);

impl PatternFlag {
    /// `?`, `*` and classes-by-star do not cross `/`; `**` components may (the usual mode).
    pub const PATH_NAME: Self = Self(1);
    /// ASCII letters match regardless of case.
    pub const IGNORE_CASE: Self = Self(2);

    /// No flags.
    pub const fn empty() -> Self {
        Self(0)
    }

    /// The raw bits.
    pub const fn bits(self) -> u8 {
        self.0
    }

    /// True if every flag of `other` is set.
    pub const fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }
}

impl BitOr for PatternFlag {
    type Output = Self;

    fn bitor(self, rhs: Self) -> Self {
        Self(self.0 | rhs.0)
    }
}

impl BitOrAssign for PatternFlag {
    fn bitor_assign(&mut self, rhs: Self) {
        self.0 |= rhs.0;
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Token {
    /// One literal byte (lower-cased when ignoring case).
    Byte(u8),
    /// One byte out of a set (`?` and `[...]`).
    Set(ByteSet),
    /// Any run of bytes without `/`.
    Star,
    /// Any run of bytes. With `skip_slash` the next token is a `/` that may be skipped
    /// together with an empty run (`x/**/y` matching `x/y`).
    AnyRun { skip_slash: bool },
}

/// A compiled glob.
#[derive(Clone)]
pub struct Pattern {
    text: Vec<u8>,
    flags: PatternFlag,
    tokens: Vec<Token>,
    /// The bytes every match must end with (the literal tail of the pattern).
    tail: Vec<u8>,
    /// True if the pattern consists of literal bytes only.
    literal: bool,
}

impl fmt::Debug for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pattern")
            .field("text", &String::from_utf8_lossy(&self.text))
            .field("flags", &self.flags)
            .finish()
    }
}

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text && self.flags == other.flags
    }
}

impl Eq for Pattern {}

impl Pattern {
    /// Parses `text` with the given flags. Trailing `/` are stripped first (a text of only
    /// slashes becomes `/`).
    pub fn new(text: impl AsRef<[u8]>, flags: PatternFlag) -> Result<Self, ParseError> {
        let text = text.as_ref();
        if text.is_empty() {
            return Err(ParseError::Empty);
        }
        if text.contains(&0) {
            return Err(ParseError::NulByte);
        }
        let text = match text.iter().rposition(|b| *b != b'/') {
            Some(last) => &text[..=last],
            None => b"/",
        };
        let tokens = compile(text, flags)?;
        let last_wildcard = tokens
            .iter()
            .rposition(|token| !matches!(token, Token::Byte(_)));
        // The `/` after a `**/` may be skipped, so it is not part of the mandatory tail.
        let tail_start = match last_wildcard.map(|pos| (pos, &tokens[pos])) {
            None => 0,
            Some((pos, Token::AnyRun { skip_slash: true })) => pos + 2,
            Some((pos, _)) => pos + 1,
        };
        let tail = tokens[tail_start..]
            .iter()
            .filter_map(|token| match token {
                Token::Byte(byte) => Some(*byte),
                _ => None,
            })
            .collect();
        Ok(Self {
            text: text.to_vec(),
            flags,
            literal: last_wildcard.is_none(),
            tokens,
            tail,
        })
    }

    /// Parses a path glob (flag [`PatternFlag::PATH_NAME`]).
    pub fn path(text: impl AsRef<[u8]>) -> Result<Self, ParseError> {
        Self::new(text, PatternFlag::PATH_NAME)
    }

    /// The pattern text (trailing slashes stripped).
    pub fn pattern(&self) -> &[u8] {
        &self.text
    }

    /// The flags the pattern was parsed with.
    pub fn flags(&self) -> PatternFlag {
        self.flags
    }

    /// True if the pattern matches all of `text`.
    pub fn matches(&self, text: impl AsRef<[u8]>) -> bool {
        self.matches_candidates(text.as_ref(), false)
    }

    /// True if the pattern matches all of `path` or any suffix of it that starts right after
    /// a `/`.
    pub fn matches_path_suffix(&self, path: impl AsRef<[u8]>) -> bool {
        self.matches_candidates(path.as_ref(), true)
    }

    fn ignore_case(&self) -> bool {
        self.flags.contains(PatternFlag::IGNORE_CASE)
    }

    fn fold(&self, byte: u8) -> u8 {
        if self.ignore_case() {
            byte.to_ascii_lowercase()
        } else {
            byte
        }
    }

    fn ends_with_tail(&self, text: &[u8]) -> bool {
        text.len() >= self.tail.len()
            && text[text.len() - self.tail.len()..]
                .iter()
                .zip(&self.tail)
                .all(|(t, p)| self.fold(*t) == *p)
    }

    fn matches_candidates(&self, text: &[u8], suffixes: bool) -> bool {
        // Every candidate ends where the text ends, so the literal tail must be there.
        if !self.ends_with_tail(text) {
            return false;
        }
        if self.literal {
            let len = self.tail.len();
            return text.len() == len
                || (suffixes && text.len() > len && text[text.len() - len - 1] == b'/');
        }
        self.simulate(text, suffixes)
    }

    /// Runs the token automaton; with `suffixes`, a new start is added after every `/`.
    fn simulate(&self, text: &[u8], suffixes: bool) -> bool {
        let states = self.tokens.len() + 1;
        let words = states.div_ceil(64);
        let mut inline = [0u64; 8];
        let mut heap = Vec::new();
        let (mut current, mut next) = if 2 * words <= inline.len() {
            inline[..2 * words].split_at_mut(words)
        } else {
            heap.resize(2 * words, 0u64);
            heap.split_at_mut(words)
        };
        self.enter(current, 0);
        let mut pos = 0;
        while pos < text.len() {
            let byte = text[pos];
            let folded = self.fold(byte);
            next.fill(0);
            for (word_index, word) in current.iter().enumerate() {
                let mut bits = *word;
                while bits != 0 {
                    let state = word_index * 64 + bits.trailing_zeros() as usize;
                    bits &= bits - 1;
                    match self.tokens.get(state) {
                        Some(Token::Byte(expected)) if folded == *expected => {
                            self.enter(next, state + 1);
                        }
                        Some(Token::Set(set)) if set.contains(byte) => {
                            self.enter(next, state + 1);
                        }
                        Some(Token::Star) if byte != b'/' => {
                            set_bit(next, state);
                            self.enter(next, state + 1);
                        }
                        Some(Token::AnyRun { .. }) => {
                            set_bit(next, state);
                            self.enter(next, state + 1);
                        }
                        _ => {}
                    }
                }
            }
            pos += 1;
            if suffixes && byte == b'/' {
                self.enter(next, 0);
            }
            std::mem::swap(&mut current, &mut next);
            if current.iter().all(|word| *word == 0) {
                if !suffixes {
                    return false;
                }
                // Nothing alive: continue with the next candidate suffix, if any.
                match text[pos..].iter().position(|b| *b == b'/') {
                    Some(offset) => {
                        pos += offset + 1;
                        self.enter(current, 0);
                    }
                    None => return false,
                }
            }
        }
        bit(current, self.tokens.len())
    }

    /// Activates `state` and everything reachable from it without consuming a byte.
    fn enter(&self, set: &mut [u64], mut state: usize) {
        loop {
            set_bit(set, state);
            match self.tokens.get(state) {
                Some(Token::Star) | Some(Token::AnyRun { skip_slash: false }) => state += 1,
                Some(Token::AnyRun { skip_slash: true }) => {
                    set_bit(set, state + 1);
                    state += 2;
                }
                _ => return,
            }
        }
    }
}

fn set_bit(set: &mut [u64], state: usize) {
    set[state / 64] |= 1u64 << (state % 64);
}

fn bit(set: &[u64], state: usize) -> bool {
    set[state / 64] & (1u64 << (state % 64)) != 0
}

/// Turns glob text (trailing slashes already stripped) into tokens.
fn compile(text: &[u8], flags: PatternFlag) -> Result<Vec<Token>, ParseError> {
    let path_name = flags.contains(PatternFlag::PATH_NAME);
    let fold = flags.contains(PatternFlag::IGNORE_CASE);
    let literal = |byte: u8| {
        Token::Byte(if fold {
            byte.to_ascii_lowercase()
        } else {
            byte
        })
    };
    let mut tokens = Vec::with_capacity(text.len());
    let mut pos = 0;
    while pos < text.len() {
        match text[pos] {
            b'\\' => {
                let byte = *text.get(pos + 1).ok_or(ParseError::TrailingBackslash)?;
                tokens.push(literal(byte));
                pos += 2;
            }
            b'?' => {
                tokens.push(Token::Set(if path_name {
                    ByteSet::all_but(b'/')
                } else {
                    ByteSet::FULL
                }));
                pos += 1;
            }
            b'[' => {
                let (set, next) = parse_class(text, pos, fold)?;
                tokens.push(Token::Set(set));
                pos = next;
            }
            b'*' => {
                let run_start = pos;
                while text.get(pos) == Some(&b'*') {
                    pos += 1;
                }
                let after_slash = run_start == 0 || text[run_start - 1] == b'/';
                let before_slash = match text.get(pos) {
                    None | Some(b'/') => true,
                    Some(b'\\') => text.get(pos + 1) == Some(&b'/'),
                    Some(_) => false,
                };
                let token = if !path_name {
                    Token::AnyRun { skip_slash: false }
                } else if pos - run_start >= 2 && after_slash && before_slash {
                    Token::AnyRun {
                        skip_slash: text.get(pos) == Some(&b'/'),
                    }
                } else {
                    Token::Star
                };
                tokens.push(token);
            }
            byte => {
                tokens.push(literal(byte));
                pos += 1;
            }
        }
    }
    Ok(tokens)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(glob: &str, cases: &[(&[u8], bool)]) {
        let pattern = Pattern::path(glob).unwrap();
        for (text, expected) in cases {
            assert_eq!(
                pattern.matches(text),
                *expected,
                "glob {glob:?} on {:?}",
                String::from_utf8_lossy(text)
            );
        }
    }

    #[track_caller]
    fn parse_error(glob: &[u8]) -> String {
        Pattern::path(glob).unwrap_err().to_string()
    }

    #[test]
    fn spec_single_star_and_double_star() {
        check(
            "/hey/*/you",
            &[
                (b"/hey/asdf/you", true),
                (b"/hey/asdf/more/you", false),
                (b"/heyasdf/you", false),
                (b"/hey/asdfyou", false),
                (b"/hey/you", false),
                (b"/hey//you", true),
            ],
        );
        check(
            "/hey/**/you",
            &[
                (b"/hey/asdf/you", true),
                (b"/hey/asdf/more/you", true),
                (b"/heyasdf/you", false),
                (b"/hey/asdfyou", false),
                (b"/hey/you", true),
                (b"/hey//you", true),
            ],
        );
    }

    #[test]
    fn spec_classes_with_double_star() {
        check(
            "/he[yx]/**/you",
            &[
                (b"/hex/asdf/more/you", true),
                (b"/hex/you", true),
                (b"/hez/asdf/you", false),
                (b"/hezasdf/you", false),
            ],
        );
        check(
            "/he[^yx]/**/you",
            &[
                (b"/hez/asdf/you", true),
                (b"/hez/you", true),
                (b"/hey/asdf/you", false),
                (b"/hex/you", false),
                (b"/hezasdf/you", false),
            ],
        );
        let pattern = Pattern::path("/he[^yx]/**/you").unwrap();
        let text = b"/hez/";
        for len in 0..=text.len() {
            assert!(!pattern.matches(&text[..len]), "prefix {len}");
        }
    }

    #[test]
    fn spec_ranges_and_question_mark() {
        check(
            "/tes[a-t]",
            &[
                (b"/tesa", true),
                (b"/test", true),
                (b"/tesu", false),
                (b"/tes", false),
                (b"/testoolong", false),
                (b"", false),
            ],
        );
        check(
            "/tes[a-t]/a?a",
            &[
                (b"/test/aba", true),
                (b"/test/aaa", true),
                (b"/test/a/a", false),
                (b"/test/ab", false),
                (b"/tesu/aaa", false),
            ],
        );
    }

    #[test]
    fn spec_multiple_stars() {
        check(
            "a*b*c",
            &[
                (b"axxbxxc", true),
                (b"axxbxxbxxc", true),
                (b"axxbxxbxxcxxc", true),
                (b"axxbxxcxx", false),
            ],
        );
        check(
            "a*b*c*",
            &[(b"axxbxxcxx", true), (b"axxbxxbxxcxxcxx", true)],
        );
        check("a/b**/c", &[(b"a/bxx/c", true), (b"a/bxx/yy/c", false)]);
    }

    #[test]
    fn spec_double_star_components() {
        check(
            "**/lost+found",
            &[
                (b"/foo/lost+found", true),
                (b"foo/lost+found", true),
                (b"/lost+found", true),
                (b"///lost+found", true),
                (b"lost+found", true),
                (b"lost+found2", false),
                (b"lost+found/", false),
                (b"xlost+found", false),
            ],
        );
        check(
            "foo/**",
            &[
                (b"foo/", true),
                (b"foo/a", true),
                (b"foo/a/b", true),
                (b"foo", false),
                (b"/foo/a", false),
            ],
        );
        check("**", &[(b"", true), (b"a", true), (b"/a/b", true)]);
        check(
            "*",
            &[(b"", true), (b"a", true), (b"/a", false), (b"a/b", false)],
        );
        check("x**y", &[(b"xaby", true), (b"xa/by", false)]);
        check("a**", &[(b"a/b", false), (b"abc", true)]);
        check("**a", &[(b"x/a", false), (b"xa", true)]);
        check("/**", &[(b"/", true), (b"/a/b", true), (b"", false)]);
        check("***/x", &[(b"a/b/x", true), (b"x", true)]);
    }

    #[test]
    fn spec_class_quirks() {
        check("[!a]", &[(b"!", true), (b"a", true), (b"b", false)]);
        check("[^a]", &[(b"!", true), (b"b", true), (b"a", false)]);
        for glob in ["[]", "[]a]", "x[]]"] {
            let pattern = Pattern::path(glob).unwrap();
            for text in [
                &b""[..],
                b"a",
                b"]",
                b"a]",
                b"x]",
                b"x",
                b"[]",
                b"[]a]",
                b"x[]]",
            ] {
                assert!(!pattern.matches(text), "{glob} on {text:?}");
            }
        }
        check("[^]", &[(b"a", true), (b"/", true), (b"", false)]);
        check("[^]x", &[(b"ax", true), (b"x", false)]);
        check("a[^x]b", &[(b"a/b", true), (b"axb", false)]);
        check("a[/]b", &[(b"a/b", true)]);
        check("[z-a]", &[(b"m", true), (b"z", true), (b"A", false)]);
        check(
            "[[:digit:]-z]",
            &[(b"5", true), (b"-", true), (b"z", true), (b"a", false)],
        );
        check(r"[a\]]", &[(b"]", true), (b"a", true)]);
        check(r"[\-a]", &[(b"-", true), (b"a", true)]);
        check("[-a]", &[(b"-", true), (b"a", true)]);
        check(
            "[[:print:]]",
            &[(b"\x7f", true), (b" ", true), (b"\x1f", false)],
        );
        check(
            "[[:graph:]]",
            &[(b"\x7f", false), (b" ", false), (b"!", true)],
        );
        check("[[:space:]]", &[(b"\x0c", true), (b"\x0b", false)]);
    }

    #[test]
    fn spec_escapes_utf8_and_dots() {
        check(r"\*", &[(b"*", true), (b"x", false)]);
        check(r"a\*b", &[(b"a*b", true), (b"axb", false)]);
        check(r"\[a]", &[(b"[a]", true), (b"a", false)]);
        check("?", &[("ä".as_bytes(), false)]);
        check("??", &[("ä".as_bytes(), true)]);
        check("*.tmp", &[(b".tmp", true), (b"x.tmp", true)]);
        check(".*", &[(b".", true), (b"..", true), (b".hidden", true)]);
        check("a/", &[(b"a", true), (b"a/", false)]);
    }

    #[test]
    fn spec_parse_errors() {
        assert_eq!(parse_error(br"a\"), "trailing backslash in pattern");
        assert_eq!(parse_error(b""), "empty pattern");
        assert_eq!(
            parse_error(b"[[:foo:]]"),
            "malformed named character class in pattern, starting at byte 0"
        );
        for glob in [&b"["[..], b"[^", b"[a-"] {
            assert_eq!(
                parse_error(glob),
                "unclosed character class in pattern, starting at byte 0",
                "{glob:?}"
            );
        }
        check(
            "[:foo:]",
            &[(b":", true), (b"f", true), (b"o", true), (b"x", false)],
        );
        assert_eq!(parse_error(b"a\0b"), "null-byte in pattern");
    }

    #[test]
    fn unclosed_classes_are_errors_not_panics() {
        for (glob, at) in [
            (&b"[abc"[..], 0),
            (b"[a-]x", 0),
            (b"[a-]", 0),
            (b"x[", 1),
            (b"ab[^", 2),
            (b"a/[[:alpha:]", 2),
        ] {
            assert_eq!(
                Pattern::path(glob).unwrap_err(),
                ParseError::UnclosedClass(at),
                "{glob:?}"
            );
        }
        assert_eq!(
            Pattern::path(br"[a\").unwrap_err(),
            ParseError::TrailingBackslash
        );
        assert_eq!(
            Pattern::path(br"[a-\").unwrap_err(),
            ParseError::TrailingBackslash
        );
        assert_eq!(
            Pattern::path(b"x[[:alpha]]").unwrap_err(),
            ParseError::MalformedNamedClass(1)
        );
        assert_eq!(
            Pattern::path(b"[[:").unwrap_err(),
            ParseError::MalformedNamedClass(0)
        );
        // The trailing slash is stripped before the escape is seen.
        assert_eq!(
            Pattern::path(br"a\/").unwrap_err(),
            ParseError::TrailingBackslash
        );
    }

    #[test]
    fn named_classes() {
        let cases: &[(&str, &[u8], &[u8])] = &[
            ("alnum", b"aZ9", b"-_ "),
            ("alpha", b"aZ", b"9_"),
            ("blank", b" \t", b"\n\r"),
            ("cntrl", b"\x00\x1f\x7f", b" a"),
            ("digit", b"09", b"a/"),
            ("lower", b"az", b"AZ"),
            ("punct", b"!/:@[`{~", b"a0 \x7f"),
            ("space", b" \t\n\x0c\r", b"\x0ba"),
            ("upper", b"AZ", b"az"),
            ("xdigit", b"09afAF", b"gG"),
        ];
        for (name, members, others) in cases {
            let pattern = Pattern::path(format!("[[:{name}:]]")).unwrap();
            for byte in *members {
                assert!(pattern.matches([*byte]), "{name} should contain {byte:#x}");
            }
            for byte in *others {
                assert!(
                    !pattern.matches([*byte]),
                    "{name} should not contain {byte:#x}"
                );
            }
        }
        check("[^[:digit:]]", &[(b"a", true), (b"5", false)]);
        check(
            "[a-c-e]",
            &[(b"b", true), (b"-", true), (b"e", true), (b"d", false)],
        );
        check(
            "[[:alpha:][:digit:]]",
            &[(b"a", true), (b"1", true), (b"-", false)],
        );
    }

    #[test]
    fn pattern_text_and_slash_stripping() {
        assert_eq!(Pattern::path("foo///").unwrap().pattern(), b"foo");
        let root = Pattern::path("///").unwrap();
        assert_eq!(root.pattern(), b"/");
        assert!(root.matches("/"));
        assert!(!root.matches("/etc"));
        assert!(!root.matches(""));
    }

    #[test]
    fn suffix_candidates() {
        let pattern = Pattern::path("b/c").unwrap();
        assert!(pattern.matches_path_suffix("/a/b/c"));
        assert!(pattern.matches_path_suffix("b/c"));
        assert!(!pattern.matches_path_suffix("/a/xb/c"));
        assert!(!pattern.matches_path_suffix("/a/b/cd"));
        let pattern = Pattern::path("[^a]*").unwrap();
        assert!(
            pattern.matches_path_suffix("/abc"),
            "whole path via leading '/'"
        );
        assert!(!pattern.matches_path_suffix("x/abc"));
        let pattern = Pattern::path("a?c").unwrap();
        assert!(pattern.matches_path_suffix("/x/abc"));
        assert!(!pattern.matches_path_suffix("/a/c"));
        let pattern = Pattern::path("**/x").unwrap();
        assert!(pattern.matches_path_suffix("x"));
        assert!(pattern.matches_path_suffix("/y/x"));
        assert!(!pattern.matches_path_suffix("/y/zx"));
        // A dead automaton restarts at the next candidate.
        let pattern = Pattern::path("q*z").unwrap();
        assert!(pattern.matches_path_suffix("/abc/def/qrz"));
        assert!(!pattern.matches_path_suffix("/abc/def/qr/z"));
    }

    #[test]
    fn double_star_skip_only_at_its_start() {
        // `/**/` may vanish, but a non-empty run must still be followed by `/`.
        check(
            "x/**/y",
            &[
                (b"x/y", true),
                (b"x/a/y", true),
                (b"x/a/b/y", true),
                (b"x/ay", false),
                (b"xy", false),
            ],
        );
        check("**/**/x", &[(b"x", true), (b"a/x", true), (b"ax", false)]);
    }

    #[test]
    fn class_admitting_slash_between_stars() {
        // `*` covers "a", the class the `/`, the second `*` is empty.
        check(
            "*[/a]*b",
            &[(b"aa/b", true), (b"a/b", true), (b"a/c/b", false)],
        );
    }

    #[test]
    fn no_exponential_blowup() {
        let glob = "*a".repeat(40) + "b";
        let pattern = Pattern::path(&glob).unwrap();
        let text = vec![b'a'; 5000];
        assert!(!pattern.matches(&text));
        let mut text_with_b = text.clone();
        text_with_b.push(b'b');
        assert!(pattern.matches(&text_with_b));
        let glob = "**/".repeat(40) + "b";
        let pattern = Pattern::path(&glob).unwrap();
        let text = b"a/".repeat(2000);
        assert!(!pattern.matches(&text));
        assert!(pattern.matches([text.as_slice(), b"b"].concat()));
        // More than the inline state words.
        let glob = "?".repeat(1000) + "*";
        let pattern = Pattern::path(&glob).unwrap();
        assert!(pattern.matches(vec![b'x'; 1200]));
        assert!(!pattern.matches(vec![b'x'; 999]));
    }

    #[test]
    fn without_path_name_stars_and_question_marks_cross_slashes() {
        let pattern = Pattern::new("a*c", PatternFlag::empty()).unwrap();
        assert!(pattern.matches("ab/bc"));
        let pattern = Pattern::new("a?c", PatternFlag::empty()).unwrap();
        assert!(pattern.matches("a/c"));
        let pattern = Pattern::path("a?c").unwrap();
        assert!(!pattern.matches("a/c"));
    }

    #[test]
    fn ignore_case() {
        let flags = PatternFlag::PATH_NAME | PatternFlag::IGNORE_CASE;
        let pattern = Pattern::new("*.JPG", flags).unwrap();
        assert!(pattern.matches("x.jpg"));
        assert!(pattern.matches("X.JpG"));
        let pattern = Pattern::new("[a-c]x", flags).unwrap();
        assert!(pattern.matches("Bx"));
        assert!(pattern.matches("bX"));
        let pattern = Pattern::new("[^a]", flags).unwrap();
        assert!(!pattern.matches("A"));
        let pattern = Pattern::new("Foo", flags).unwrap();
        assert!(pattern.matches_path_suffix("/x/FOO"));
        assert!(!Pattern::path("Foo").unwrap().matches("foo"));
    }

    /// Direct recursive reading of the glob rules on the pattern text (exponential, tiny
    /// inputs only), used as the reference for the automaton.
    fn reference(pattern: &[u8], at: usize, text: &[u8]) -> bool {
        let Some(&first) = pattern.get(at) else {
            return text.is_empty();
        };
        match first {
            b'*' => {
                let mut end = at;
                while pattern.get(end) == Some(&b'*') {
                    end += 1;
                }
                let component = end - at >= 2
                    && (at == 0 || pattern[at - 1] == b'/')
                    && matches!(pattern.get(end), None | Some(b'/'));
                if component && pattern.get(end) == Some(&b'/') && reference(pattern, end + 1, text)
                {
                    return true;
                }
                (0..=text.len())
                    .take_while(|len| component || !text[..*len].contains(&b'/'))
                    .any(|len| reference(pattern, end, &text[len..]))
            }
            b'?' => !text.is_empty() && text[0] != b'/' && reference(pattern, at + 1, &text[1..]),
            b'[' => {
                let close = at + pattern[at..].iter().position(|b| *b == b']').unwrap();
                let body = &pattern[at + 1..close];
                let Some(&byte) = text.first() else {
                    return false;
                };
                let hit = match body.strip_prefix(b"^") {
                    Some(members) => !members.contains(&byte),
                    None => body.contains(&byte),
                };
                hit && reference(pattern, close + 1, &text[1..])
            }
            literal => text.first() == Some(&literal) && reference(pattern, at + 1, &text[1..]),
        }
    }

    #[test]
    fn automaton_agrees_with_reference() {
        const PIECES: &[&str] = &["a", "b", "/", "*", "**", "?", "[ab]", "[^a]", "[/b]"];
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = |bound: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % bound as u64) as usize
        };
        let mut outcomes = [0usize; 2];
        for _ in 0..20_000 {
            let glob: String = (0..1 + next(6))
                .map(|_| PIECES[next(PIECES.len())])
                .collect();
            let Ok(pattern) = Pattern::path(&glob) else {
                continue;
            };
            let stripped = pattern.pattern().to_vec();
            let text: Vec<u8> = (0..next(8)).map(|_| b"ab/"[next(3)]).collect();
            let expected = reference(&stripped, 0, &text);
            outcomes[usize::from(expected)] += 1;
            assert_eq!(
                pattern.matches(&text),
                expected,
                "{glob:?} on {:?}",
                String::from_utf8_lossy(&text)
            );
            let expected_suffix = expected
                || text
                    .iter()
                    .enumerate()
                    .any(|(pos, b)| *b == b'/' && reference(&stripped, 0, &text[pos + 1..]));
            assert_eq!(
                pattern.matches_path_suffix(&text),
                expected_suffix,
                "suffixes: {glob:?} on {:?}",
                String::from_utf8_lossy(&text)
            );
        }
        assert!(outcomes.iter().all(|count| *count > 1000), "{outcomes:?}");
    }
}
