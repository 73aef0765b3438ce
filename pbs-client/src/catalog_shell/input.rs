//! Where the shell's lines come from.
//!
//! On a terminal [`super::TerminalLines`] edits lines with history; otherwise lines are read
//! plainly, without a prompt.

use std::io::{BufRead, IsTerminal, Write};

use anyhow::Result;

/// Completion candidates for the last word of a partial line (each a replacement of it).
pub type Completer<'a> = dyn FnMut(&str) -> Vec<String> + 'a;

/// A source of input lines.
pub trait LineSource {
    /// The next line without its terminator; `None` at the end of input. Interactive
    /// sources may offer `complete`'s candidates on Tab.
    fn read_line(&mut self, prompt: &str, complete: &mut Completer<'_>) -> Result<Option<String>>;
}

/// Lines from any buffered reader, e.g. stdin; shows `prompt` on stdout only if `interactive`.
pub struct StdinLines<B: BufRead> {
    input: B,
    interactive: bool,
}

/// The line source for the process: the line editor on a terminal, else plain stdin lines.
pub fn stdin_line_source() -> Box<dyn LineSource> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() && std::io::stdout().is_terminal() {
        Box::new(super::TerminalLines::stdio())
    } else {
        Box::new(StdinLines::new(stdin.lock(), false))
    }
}

impl<B: BufRead> StdinLines<B> {
    /// Lines from `input`.
    pub fn new(input: B, interactive: bool) -> Self {
        Self { input, interactive }
    }
}

impl<B: BufRead> LineSource for StdinLines<B> {
    fn read_line(&mut self, prompt: &str, _complete: &mut Completer<'_>) -> Result<Option<String>> {
        if self.interactive {
            let mut stdout = std::io::stdout();
            stdout.write_all(prompt.as_bytes())?;
            stdout.flush()?;
        }
        let mut line = Vec::new();
        if self.input.read_until(b'\n', &mut line)? == 0 {
            if self.interactive {
                println!();
            }
            return Ok(None);
        }
        if line.ends_with(b"\n") {
            line.pop();
            if line.ends_with(b"\r") {
                line.pop();
            }
        }
        Ok(Some(String::from_utf8_lossy(&line).into_owned()))
    }
}

impl LineSource for std::vec::IntoIter<String> {
    fn read_line(
        &mut self,
        _prompt: &str,
        _complete: &mut Completer<'_>,
    ) -> Result<Option<String>> {
        Ok(self.next())
    }
}
