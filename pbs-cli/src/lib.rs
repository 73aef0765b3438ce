//! Command-line parsing with the conventions every tool of the project shares.
//!
//! `tool <command> [<subcommand>...] [positional args] [--option value ...]`: commands may be
//! abbreviated to a unique prefix; options are `--name value`, `--name=value` or the same with a
//! single dash; booleans may stand alone; `--` ends option parsing; required positionals must be
//! given positionally; an array-typed last positional takes all remaining words.

pub mod format;
pub mod help;
mod parse;
mod usage;

pub use help::{find_leaf, help_text, print_completions, print_error_with_usage};
pub use parse::{parse_command_line, Invocation, ParsedArgs};
pub use usage::usage_text;

/// What kind of value an option or positional takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValueKind {
    /// Free text.
    String,
    /// A non-negative or signed integer (validated when read).
    Integer,
    /// `1|on|yes|true` / `0|off|no|false`; may stand alone when the default is false.
    Boolean { default: bool },
    /// May be given repeatedly.
    Array,
}

/// One parameter of a command.
#[derive(Clone, Debug)]
pub struct Param {
    pub name: &'static str,
    pub kind: ValueKind,
    pub optional: bool,
    pub description: &'static str,
}

impl Param {
    /// A required string parameter.
    pub const fn required(name: &'static str, description: &'static str) -> Self {
        Self {
            name,
            kind: ValueKind::String,
            optional: false,
            description,
        }
    }

    /// An optional string parameter.
    pub const fn optional(name: &'static str, description: &'static str) -> Self {
        Self {
            name,
            kind: ValueKind::String,
            optional: true,
            description,
        }
    }

    /// An optional boolean flag with default `false`.
    pub const fn flag(name: &'static str, description: &'static str) -> Self {
        Self {
            name,
            kind: ValueKind::Boolean { default: false },
            optional: true,
            description,
        }
    }

    /// An optional integer parameter.
    pub const fn integer(name: &'static str, description: &'static str) -> Self {
        Self {
            name,
            kind: ValueKind::Integer,
            optional: true,
            description,
        }
    }

    /// An optional repeatable parameter.
    pub const fn array(name: &'static str, description: &'static str) -> Self {
        Self {
            name,
            kind: ValueKind::Array,
            optional: true,
            description,
        }
    }
}

/// A leaf command: its parameters and which of them are positional (in order).
#[derive(Clone, Debug)]
pub struct Command {
    pub description: &'static str,
    pub params: Vec<Param>,
    pub positionals: Vec<&'static str>,
}

impl Command {
    /// Looks up a parameter by name.
    pub fn param(&self, name: &str) -> Option<&Param> {
        self.params.iter().find(|p| p.name == name)
    }
}

/// A tree of commands; leaves are [`Command`]s.
#[derive(Clone, Debug)]
pub enum CommandTree {
    Leaf(Command),
    Group(Vec<(&'static str, CommandTree)>),
}

impl CommandTree {
    /// A leaf command.
    pub fn leaf(
        description: &'static str,
        params: Vec<Param>,
        positionals: Vec<&'static str>,
    ) -> Self {
        CommandTree::Leaf(Command {
            description,
            params,
            positionals,
        })
    }
}

/// The exit status of a failed command (`exit(-1)`).
pub const ERROR_EXIT_CODE: i32 = 255;

/// Output formats of `--output-format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputFormat {
    Text,
    Json,
    JsonPretty,
}

impl OutputFormat {
    /// From `--output-format`, else `PROXMOX_OUTPUT_FORMAT`, else text.
    pub fn from_args(args: &ParsedArgs) -> anyhow::Result<Self> {
        let value = match args.get("output-format") {
            Some(v) => v.to_string(),
            None => std::env::var("PROXMOX_OUTPUT_FORMAT").unwrap_or_else(|_| "text".into()),
        };
        match value.as_str() {
            "text" => Ok(OutputFormat::Text),
            "json" => Ok(OutputFormat::Json),
            "json-pretty" => Ok(OutputFormat::JsonPretty),
            other => anyhow::bail!("undefined output format '{other}'"),
        }
    }

    /// Prints a JSON value in this format; `text` prints objects as `key: value` lines.
    pub fn print(self, value: &serde_json::Value) -> anyhow::Result<()> {
        match self {
            OutputFormat::Json => println!("{}", serde_json::to_string(value)?),
            OutputFormat::JsonPretty => println!("{}", serde_json::to_string_pretty(value)?),
            OutputFormat::Text => match value {
                serde_json::Value::Object(map) => {
                    for (key, v) in map {
                        match v {
                            serde_json::Value::String(s) => println!("{key}: {s}"),
                            serde_json::Value::Array(items) => {
                                println!("{key}:");
                                for item in items {
                                    match item {
                                        serde_json::Value::String(s) => println!("  {s}"),
                                        other => println!("  {other}"),
                                    }
                                }
                            }
                            other => println!("{key}: {other}"),
                        }
                    }
                }
                other => println!("{other}"),
            },
        }
        Ok(())
    }
}

mod password;
pub use password::{read_password, read_tty_password};
