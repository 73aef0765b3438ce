//! Usage text printed with parameter errors and by `help`.

use crate::{Command, ValueKind};

/// One-line synopsis followed by the parameter descriptions.
pub fn usage_text(program: &str, path: &[&str], command: &Command) -> String {
    let mut line = format!("Usage: {program}");
    for part in path {
        line.push(' ');
        line.push_str(part);
    }
    for name in &command.positionals {
        line.push_str(&format!(" <{name}>"));
    }
    for param in command
        .params
        .iter()
        .filter(|p| !command.positionals.contains(&p.name))
    {
        let value = match param.kind {
            ValueKind::Boolean { .. } => "<boolean>",
            ValueKind::Integer => "<integer>",
            ValueKind::String | ValueKind::Array => "<string>",
        };
        let text = format!("--{} {value}", param.name);
        if param.optional {
            line.push_str(&format!(" [{text}]"));
        } else {
            line.push_str(&format!(" {text}"));
        }
    }
    let mut out = format!("{line}\n\n{}\n", command.description);
    for param in &command.params {
        out.push_str(&format!("\n  {:<24} {}", param.name, param.description));
    }
    out.push('\n');
    out
}
