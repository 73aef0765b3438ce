//! A small line editor for the shell on a terminal: raw mode, cursor movement, history.

use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, RawFd};

use anyhow::{bail, Result};

use super::input::{Completer, LineSource};

/// Keys the editor acts on, decoded from the terminal's byte stream.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Key {
    Char(char),
    Enter,
    Backspace,
    Delete,
    Left,
    Right,
    Up,
    Down,
    Home,
    End,
    /// Ctrl-D
    EndOfInput,
    /// Ctrl-C
    Interrupt,
    /// Ctrl-U
    KillLine,
    Tab,
    Ignored,
}

/// Restores the terminal settings when dropped.
struct RawMode {
    fd: RawFd,
    saved: libc::termios,
}

impl RawMode {
    fn enable(fd: RawFd) -> Result<Self> {
        // SAFETY: termios is plain data filled by tcgetattr on a valid fd.
        let mut term: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        if unsafe { libc::tcgetattr(fd, &mut term) } != 0 {
            bail!(
                "unable to read terminal settings - {}",
                io::Error::last_os_error()
            );
        }
        let saved = term;
        term.c_lflag &= !(libc::ICANON | libc::ECHO | libc::ISIG | libc::IEXTEN);
        term.c_iflag &= !(libc::IXON | libc::ICRNL);
        term.c_cc[libc::VMIN] = 1;
        term.c_cc[libc::VTIME] = 0;
        // SAFETY: valid fd and settings derived from the current ones.
        if unsafe { libc::tcsetattr(fd, libc::TCSANOW, &term) } != 0 {
            bail!(
                "unable to set terminal mode - {}",
                io::Error::last_os_error()
            );
        }
        Ok(Self { fd, saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        // SAFETY: restores the settings read in `enable`.
        unsafe { libc::tcsetattr(self.fd, libc::TCSANOW, &self.saved) };
    }
}

/// Turns bytes into keys (escape sequences, UTF-8).
fn read_key(input: &mut dyn Read) -> io::Result<Option<Key>> {
    let mut byte = [0u8; 1];
    if input.read(&mut byte)? == 0 {
        return Ok(None);
    }
    let key = match byte[0] {
        b'\r' | b'\n' => Key::Enter,
        0x7f | 0x08 => Key::Backspace,
        0x03 => Key::Interrupt,
        0x04 => Key::EndOfInput,
        0x15 => Key::KillLine,
        b'\t' => Key::Tab,
        0x01 => Key::Home,
        0x05 => Key::End,
        0x1b => {
            let mut seq = [0u8; 2];
            input.read_exact(&mut seq)?;
            match seq {
                [b'[', b'A'] | [b'O', b'A'] => Key::Up,
                [b'[', b'B'] | [b'O', b'B'] => Key::Down,
                [b'[', b'C'] | [b'O', b'C'] => Key::Right,
                [b'[', b'D'] | [b'O', b'D'] => Key::Left,
                [b'[', b'H'] | [b'O', b'H'] => Key::Home,
                [b'[', b'F'] | [b'O', b'F'] => Key::End,
                [b'[', digit @ b'1'..=b'8'] => {
                    let mut tail = [0u8; 1];
                    input.read_exact(&mut tail)?;
                    match (digit, tail[0]) {
                        (b'3', b'~') => Key::Delete,
                        (b'1' | b'7', b'~') => Key::Home,
                        (b'4' | b'8', b'~') => Key::End,
                        _ => Key::Ignored,
                    }
                }
                _ => Key::Ignored,
            }
        }
        first if first < 0x20 => Key::Ignored,
        first => {
            let len = match first {
                0xc0..=0xdf => 2,
                0xe0..=0xef => 3,
                0xf0..=0xf7 => 4,
                _ => 1,
            };
            let mut buf = [first, 0, 0, 0];
            input.read_exact(&mut buf[1..len])?;
            match std::str::from_utf8(&buf[..len])
                .ok()
                .and_then(|s| s.chars().next())
            {
                Some(c) => Key::Char(c),
                None => Key::Ignored,
            }
        }
    };
    Ok(Some(key))
}

/// The longest common prefix of `words` (on character boundaries).
fn common_prefix(words: &[String]) -> String {
    let Some(first) = words.first() else {
        return String::new();
    };
    let mut len = first.len();
    for word in &words[1..] {
        len = first
            .char_indices()
            .zip(word.chars())
            .take_while(|((_, a), b)| a == b)
            .last()
            .map_or(0, |((i, a), _)| i + a.len_utf8())
            .min(len);
    }
    first[..len].to_string()
}

/// Line editing state of one prompt.
#[derive(Default)]
struct LineBuffer {
    chars: Vec<char>,
    cursor: usize,
}

impl LineBuffer {
    fn set(&mut self, text: &str) {
        self.chars = text.chars().collect();
        self.cursor = self.chars.len();
    }

    fn text(&self) -> String {
        self.chars.iter().collect()
    }

    /// Applies an editing key; returns false for keys that are not edits.
    fn edit(&mut self, key: &Key) -> bool {
        match key {
            Key::Char(c) => {
                self.chars.insert(self.cursor, *c);
                self.cursor += 1;
            }
            Key::Backspace if self.cursor > 0 => {
                self.cursor -= 1;
                self.chars.remove(self.cursor);
            }
            Key::Delete if self.cursor < self.chars.len() => {
                self.chars.remove(self.cursor);
            }
            Key::Left if self.cursor > 0 => self.cursor -= 1,
            Key::Right if self.cursor < self.chars.len() => self.cursor += 1,
            Key::Home => self.cursor = 0,
            Key::End => self.cursor = self.chars.len(),
            Key::KillLine => {
                self.chars.drain(..self.cursor);
                self.cursor = 0;
            }
            Key::Backspace | Key::Delete | Key::Left | Key::Right => {}
            _ => return false,
        }
        true
    }
}

/// Interactive lines from a terminal, with history (up/down) and in-line editing.
pub struct TerminalLines<I: Read + AsRawFd, O: Write> {
    input: I,
    output: O,
    history: Vec<String>,
}

impl TerminalLines<io::Stdin, io::Stdout> {
    /// The editor on stdin/stdout.
    pub fn stdio() -> Self {
        Self::new(io::stdin(), io::stdout())
    }
}

impl<I: Read + AsRawFd, O: Write> TerminalLines<I, O> {
    /// An editor reading keys from the terminal `input` and drawing on `output`.
    pub fn new(input: I, output: O) -> Self {
        Self {
            input,
            output,
            history: Vec::new(),
        }
    }

    fn redraw(&mut self, prompt: &str, line: &LineBuffer) -> io::Result<()> {
        let text = line.text();
        write!(self.output, "\r{prompt}{text}\x1b[K")?;
        let behind = line.chars.len() - line.cursor;
        if behind > 0 {
            write!(self.output, "\x1b[{behind}D")?;
        }
        self.output.flush()
    }

    /// Tab: completes the last word before the cursor, or lists the candidates.
    fn tab(&mut self, line: &mut LineBuffer, complete: &mut Completer<'_>) -> io::Result<()> {
        let before: String = line.chars[..line.cursor].iter().collect();
        let candidates = complete(&before);
        let word_start = before.rfind(' ').map_or(0, |pos| pos + 1);
        let word = &before[word_start..];
        let common = common_prefix(&candidates);
        if common.len() > word.len() && common.starts_with(word) {
            let insert: Vec<char> = common[word.len()..].chars().collect();
            for c in insert {
                line.edit(&Key::Char(c));
            }
        } else if candidates.len() > 1 {
            write!(self.output, "\r\n{}\r\n", candidates.join("  "))?;
        }
        Ok(())
    }

    fn edit_line(&mut self, prompt: &str, complete: &mut Completer<'_>) -> Result<Option<String>> {
        let mut line = LineBuffer::default();
        // Position in the history while browsing; `history.len()` is the line being typed.
        let mut browse = self.history.len();
        let mut typed = String::new();
        self.redraw(prompt, &line)?;
        loop {
            let Some(key) = read_key(&mut self.input)? else {
                return Ok(None);
            };
            match key {
                Key::Enter => {
                    write!(self.output, "\r\n")?;
                    self.output.flush()?;
                    return Ok(Some(line.text()));
                }
                Key::Interrupt => return Ok(None),
                Key::EndOfInput if line.chars.is_empty() => return Ok(None),
                Key::Up if browse > 0 => {
                    if browse == self.history.len() {
                        typed = line.text();
                    }
                    browse -= 1;
                    line.set(&self.history[browse]);
                }
                Key::Down if browse < self.history.len() => {
                    browse += 1;
                    match self.history.get(browse) {
                        Some(entry) => line.set(entry),
                        None => line.set(&typed),
                    }
                }
                Key::Tab => self.tab(&mut line, complete)?,
                other => {
                    line.edit(&other);
                }
            }
            self.redraw(prompt, &line)?;
        }
    }
}

impl<I: Read + AsRawFd, O: Write> LineSource for TerminalLines<I, O> {
    fn read_line(&mut self, prompt: &str, complete: &mut Completer<'_>) -> Result<Option<String>> {
        let raw = RawMode::enable(self.input.as_raw_fd())?;
        let result = self.edit_line(prompt, complete);
        drop(raw);
        if let Ok(None) = result {
            writeln!(self.output)?;
        }
        if let Ok(Some(line)) = &result {
            if !line.trim().is_empty() && self.history.last() != Some(line) {
                self.history.push(line.clone());
            }
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(bytes: &[u8]) -> Vec<Key> {
        let mut input = bytes;
        let mut out = Vec::new();
        while let Some(key) = read_key(&mut input).unwrap() {
            out.push(key);
        }
        out
    }

    #[test]
    fn key_decoding() {
        assert_eq!(
            keys(b"a\x7f\x1b[A\x1b[B\x1b[C\x1b[D\x1b[3~\x1bOH\x03\x04\r\xc3\xa4"),
            [
                Key::Char('a'),
                Key::Backspace,
                Key::Up,
                Key::Down,
                Key::Right,
                Key::Left,
                Key::Delete,
                Key::Home,
                Key::Interrupt,
                Key::EndOfInput,
                Key::Enter,
                Key::Char('ä'),
            ]
        );
    }

    #[test]
    fn completion_prefix() {
        let words = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(common_prefix(&words(&["select", "sel"])), "sel");
        assert_eq!(common_prefix(&words(&["etc/", "etc/x"])), "etc/");
        assert_eq!(common_prefix(&words(&["abc", "xyz"])), "");
        assert_eq!(common_prefix(&words(&["äa", "äb"])), "ä");
        assert_eq!(common_prefix(&[]), "");
    }

    #[test]
    fn editing() {
        let mut line = LineBuffer::default();
        for key in keys(b"lsx\x1b[D\x1b[D\x1b[3~ \x1b[F\x7fetc") {
            line.edit(&key);
        }
        assert_eq!(line.text(), "l etc");
        line.edit(&Key::Home);
        line.edit(&Key::Char('>'));
        assert_eq!(line.text(), ">l etc");
        line.edit(&Key::End);
        line.edit(&Key::KillLine);
        assert_eq!(line.text(), "");
    }
}
