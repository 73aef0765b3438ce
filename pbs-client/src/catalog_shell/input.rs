//! Where the shell's lines come from.
//!
//! On a terminal the prompt is shown and the line is read in the terminal's cooked mode
//! (the kernel's line editing); otherwise lines are read plainly, without a prompt.

use std::io::{BufRead, IsTerminal, Write};

use anyhow::Result;

/// A source of input lines.
pub trait LineSource {
    /// The next line without its terminator; `None` at the end of input.
    fn read_line(&mut self, prompt: &str) -> Result<Option<String>>;
}

/// Lines from any buffered reader, e.g. stdin; shows `prompt` on stdout only if `interactive`.
pub struct StdinLines<B: BufRead> {
    input: B,
    interactive: bool,
}

impl StdinLines<std::io::StdinLock<'static>> {
    /// Lines from the process's stdin; prompts when stdin is a terminal.
    pub fn stdin() -> Self {
        let stdin = std::io::stdin();
        let interactive = stdin.is_terminal();
        Self {
            input: stdin.lock(),
            interactive,
        }
    }
}

impl<B: BufRead> StdinLines<B> {
    /// Lines from `input`.
    pub fn new(input: B, interactive: bool) -> Self {
        Self { input, interactive }
    }
}

impl<B: BufRead> LineSource for StdinLines<B> {
    fn read_line(&mut self, prompt: &str) -> Result<Option<String>> {
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
    fn read_line(&mut self, _prompt: &str) -> Result<Option<String>> {
        Ok(self.next())
    }
}
