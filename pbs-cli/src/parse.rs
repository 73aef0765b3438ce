//! Turning argv into a command path and its parameters.

use std::collections::BTreeMap;

use anyhow::{bail, format_err, Result};

use crate::{Command, CommandTree, ValueKind};

/// The parameters given for a command, by name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ParsedArgs {
    values: BTreeMap<String, Vec<String>>,
}

impl ParsedArgs {
    /// The (last) value of a parameter.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.values
            .get(name)
            .and_then(|v| v.last())
            .map(String::as_str)
    }

    /// A required parameter (the parser has already checked presence).
    pub fn required(&self, name: &str) -> Result<&str> {
        self.get(name).ok_or_else(|| {
            format_err!("parameter verification failed - '{name}': missing argument")
        })
    }

    /// All values of a repeatable parameter.
    pub fn get_all(&self, name: &str) -> &[String] {
        self.values.get(name).map(Vec::as_slice).unwrap_or(&[])
    }

    /// A boolean parameter; absent means `default`.
    pub fn flag(&self, name: &str, default: bool) -> Result<bool> {
        match self.get(name) {
            None => Ok(default),
            Some(v) => parse_bool(v).ok_or_else(|| {
                format_err!(
                    "parameter verification failed - '{name}': unable to parse boolean '{v}'"
                )
            }),
        }
    }

    /// An integer parameter.
    pub fn integer(&self, name: &str) -> Result<Option<i64>> {
        match self.get(name) {
            None => Ok(None),
            Some(v) => v.parse().map(Some).map_err(|_| {
                format_err!("parameter verification failed - '{name}': expected integer, got '{v}'")
            }),
        }
    }

    /// Every `(name, value)` pair, repeated parameters once per value, names sorted.
    pub fn pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.values
            .iter()
            .flat_map(|(name, values)| values.iter().map(move |v| (name.as_str(), v.as_str())))
    }

    fn push(&mut self, name: &str, value: String) {
        self.values.entry(name.to_string()).or_default().push(value);
    }
}

fn parse_bool(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "1" | "on" | "yes" | "true" => Some(true),
        "0" | "off" | "no" | "false" => Some(false),
        _ => None,
    }
}

/// A resolved command: its full name path, its definition and its arguments.
#[derive(Debug)]
pub struct Invocation<'a> {
    pub path: Vec<&'static str>,
    pub command: &'a Command,
    pub args: ParsedArgs,
}

fn resolve<'a>(
    tree: &'a CommandTree,
    args: &[String],
    path: &mut Vec<&'static str>,
) -> Result<(&'a Command, usize)> {
    match tree {
        CommandTree::Leaf(cmd) => Ok((cmd, 0)),
        CommandTree::Group(entries) => {
            let Some(word) = args.first() else {
                bail!(
                    "no command specified - possible commands: {}",
                    names(entries)
                );
            };
            let matches: Vec<_> = if let Some(exact) = entries.iter().find(|(n, _)| n == word) {
                vec![exact]
            } else {
                entries
                    .iter()
                    .filter(|(n, _)| n.starts_with(word.as_str()))
                    .collect()
            };
            match matches.as_slice() {
                [(name, sub)] => {
                    path.push(name);
                    let (cmd, used) = resolve(sub, &args[1..], path)?;
                    Ok((cmd, used + 1))
                }
                [] => bail!(
                    "no such command '{word}' - possible commands: {}",
                    names(entries)
                ),
                _ => bail!(
                    "ambiguous command '{word}' - possible commands: {}",
                    names(entries)
                ),
            }
        }
    }
}

fn names(entries: &[(&'static str, CommandTree)]) -> String {
    entries
        .iter()
        .map(|(n, _)| *n)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Parses `args` (without the program name) against `tree`.
pub fn parse_command_line<'a>(tree: &'a CommandTree, args: &[String]) -> Result<Invocation<'a>> {
    let mut path = Vec::new();
    let (command, used) = resolve(tree, args, &mut path)?;
    let args = parse_params(command, &args[used..])?;
    Ok(Invocation {
        path,
        command,
        args,
    })
}

fn parse_params(command: &Command, words: &[String]) -> Result<ParsedArgs> {
    let mut parsed = ParsedArgs::default();
    let mut positional_words = Vec::new();
    let mut option_names = Vec::new();
    let mut i = 0;
    let mut options_done = false;
    while i < words.len() {
        let word = &words[i];
        i += 1;
        if options_done || !word.starts_with('-') || word == "-" {
            positional_words.push(word.clone());
            continue;
        }
        if word == "--" {
            options_done = true;
            continue;
        }
        let body = word.trim_start_matches('-');
        let (name, inline_value) = match body.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (body, None),
        };
        let param = command
            .param(name)
            .ok_or_else(|| format_err!("parameter verification failed - '{name}': schema does not allow additional properties"))?;
        let value = match (inline_value, param.kind) {
            (Some(v), _) => v,
            (None, ValueKind::Boolean { default }) => {
                match words
                    .get(i)
                    .and_then(|next| parse_bool(next).map(|_| next.clone()))
                {
                    Some(v) => {
                        i += 1;
                        v
                    }
                    None if !default => "true".to_string(),
                    None => {
                        bail!("parameter verification failed - '{name}': missing boolean value.")
                    }
                }
            }
            (None, _) => match words.get(i) {
                Some(next) if !next.starts_with('-') || next == "-" => {
                    i += 1;
                    next.clone()
                }
                _ => bail!("parameter verification failed - '{name}': missing parameter value."),
            },
        };
        option_names.push(param.name);
        parsed.push(param.name, value);
    }

    let mut rest = positional_words.into_iter();
    let count = command.positionals.len();
    for (idx, name) in command.positionals.iter().enumerate() {
        let param = command
            .param(name)
            .ok_or_else(|| format_err!("internal error: positional '{name}' has no definition"))?;
        let last = idx + 1 == count;
        if last && param.kind == ValueKind::Array {
            for word in rest.by_ref() {
                parsed.push(name, word);
            }
        } else if let Some(word) = rest.next() {
            if option_names.contains(name) {
                bail!("parameter verification failed - '{name}': given twice");
            }
            parsed.push(name, word);
        } else if !param.optional || (!last && option_names.contains(name)) {
            bail!("parameter verification failed - '{name}': missing argument");
        }
    }
    let surplus: Vec<String> = rest.collect();
    if !surplus.is_empty() {
        bail!("got additional arguments: {surplus:?}");
    }
    for param in &command.params {
        if !param.optional && parsed.get(param.name).is_none() {
            bail!(
                "parameter verification failed - '{}': missing argument",
                param.name
            );
        }
        if param.kind == ValueKind::Integer {
            parsed.integer(param.name)?;
        }
        if let ValueKind::Boolean { default } = param.kind {
            parsed.flag(param.name, default)?;
        }
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Param;

    fn tree() -> CommandTree {
        let inspect_chunk = Command {
            description: "inspect a chunk",
            params: vec![
                Param::required("chunk", "chunk file"),
                Param::optional("keyfile", "key"),
                Param::flag("use-filename-only", "only names"),
                Param::array("exclude", "patterns"),
            ],
            positionals: vec!["chunk"],
        };
        let backup = Command {
            description: "backup",
            params: vec![
                Param::array("backupspec", "specs"),
                Param::flag("dry-run", ""),
            ],
            positionals: vec!["backupspec"],
        };
        CommandTree::Group(vec![
            (
                "inspect",
                CommandTree::Group(vec![
                    ("chunk", CommandTree::Leaf(inspect_chunk.clone())),
                    ("file", CommandTree::Leaf(inspect_chunk)),
                ]),
            ),
            ("backup", CommandTree::Leaf(backup)),
            (
                "benchmark",
                CommandTree::Leaf(Command {
                    description: "",
                    params: vec![],
                    positionals: vec![],
                }),
            ),
        ])
    }

    fn argv(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn prefixes_and_option_forms() {
        let t = tree();
        let inv =
            parse_command_line(&t, &argv("insp ch abc --keyfile=k -use-filename-only")).unwrap();
        assert_eq!(inv.path, ["inspect", "chunk"]);
        assert_eq!(inv.args.get("chunk"), Some("abc"));
        assert_eq!(inv.args.get("keyfile"), Some("k"));
        assert!(inv.args.flag("use-filename-only", false).unwrap());
        let inv = parse_command_line(&t, &argv("inspect chunk --use-filename-only 0 abc")).unwrap();
        assert!(!inv.args.flag("use-filename-only", false).unwrap());
        assert_eq!(inv.args.get("chunk"), Some("abc"));
    }

    #[test]
    fn errors() {
        let t = tree();
        assert!(parse_command_line(&t, &argv("b"))
            .unwrap_err()
            .to_string()
            .contains("ambiguous"));
        assert!(parse_command_line(&t, &argv("inspect chunk"))
            .unwrap_err()
            .to_string()
            .contains("'chunk': missing argument"));
        assert!(parse_command_line(&t, &argv("inspect chunk --chunk x")).is_err());
        assert!(parse_command_line(&t, &argv("inspect chunk a b"))
            .unwrap_err()
            .to_string()
            .contains("additional arguments"));
        assert!(parse_command_line(&t, &argv("inspect chunk a --keyfile"))
            .unwrap_err()
            .to_string()
            .contains("missing parameter value"));
        assert!(parse_command_line(&t, &argv("inspect chunk a --bogus 1")).is_err());
    }

    #[test]
    fn arrays_and_double_dash() {
        let t = tree();
        let inv = parse_command_line(
            &t,
            &argv("backup a.pxar:/ b.img:/dev/x --dry-run -- -c.conf:/x"),
        )
        .unwrap();
        assert_eq!(
            inv.args.get_all("backupspec"),
            ["a.pxar:/", "b.img:/dev/x", "-c.conf:/x"]
        );
        let inv = parse_command_line(&t, &argv("inspect chunk a --exclude x --exclude y")).unwrap();
        assert_eq!(inv.args.get_all("exclude"), ["x", "y"]);
        let pairs: Vec<_> = inv.args.pairs().collect();
        assert_eq!(pairs, [("chunk", "a"), ("exclude", "x"), ("exclude", "y")]);
        let inv = parse_command_line(&t, &argv("inspect chunk --keyfile=-k a")).unwrap();
        assert_eq!(inv.args.get("keyfile"), Some("-k"));
    }
}
