//! Finding commands in a tree by (prefixes of) their names, `help` texts and bash completion.

use anyhow::{format_err, Result};

use crate::{usage_text, Command, CommandTree};

/// The entry named `word` exactly, else the only entry `word` is a prefix of.
fn lookup<'a>(
    entries: &'a [(&'static str, CommandTree)],
    word: &str,
) -> Option<&'a (&'static str, CommandTree)> {
    entries.iter().find(|(n, _)| *n == word).or_else(|| {
        let mut matches = entries.iter().filter(|(n, _)| n.starts_with(word));
        match (matches.next(), matches.next()) {
            (Some(one), None) => Some(one),
            _ => None,
        }
    })
}

/// Walks the tree along `args` as far as the names go (exact or unique prefix) and returns
/// the leaf reached with its full name path.
pub fn find_leaf<'a>(
    tree: &'a CommandTree,
    args: &[String],
) -> Option<(Vec<&'static str>, &'a Command)> {
    let mut node = tree;
    let mut path = Vec::new();
    let mut words = args.iter();
    loop {
        match node {
            CommandTree::Leaf(cmd) => return Some((path, cmd)),
            CommandTree::Group(entries) => {
                let found = lookup(entries, words.next()?)?;
                path.push(found.0);
                node = &found.1;
            }
        }
    }
}

fn collect_usage(
    program: &str,
    tree: &CommandTree,
    path: &mut Vec<&'static str>,
    verbose: bool,
    out: &mut String,
) {
    match tree {
        CommandTree::Leaf(cmd) => {
            if verbose {
                out.push_str(&usage_text(program, path, cmd));
                out.push('\n');
            } else {
                let mut line = format!("{program} {}", path.join(" "));
                for name in &cmd.positionals {
                    line.push_str(&format!(" <{name}>"));
                }
                if cmd.params.len() > cmd.positionals.len() {
                    line.push_str(" [OPTIONS]");
                }
                out.push_str(&line);
                out.push('\n');
            }
        }
        CommandTree::Group(entries) => {
            for (name, sub) in entries {
                path.push(name);
                collect_usage(program, sub, path, verbose, out);
                path.pop();
            }
        }
    }
}

/// The text of `help [command...] [--verbose]`.
pub fn help_text(
    program: &str,
    tree: &CommandTree,
    words: &[String],
    verbose: bool,
) -> Result<String> {
    let mut node = tree;
    let mut path = Vec::new();
    for word in words {
        let CommandTree::Group(entries) = node else {
            break;
        };
        let found = lookup(entries, word)
            .ok_or_else(|| format_err!("no such command '{}'", words.join(" ")))?;
        path.push(found.0);
        node = &found.1;
    }
    match node {
        CommandTree::Leaf(cmd) => Ok(usage_text(program, &path, cmd)),
        group => {
            let mut out = String::from("Usage:\n\n");
            collect_usage(program, group, &mut path, verbose, &mut out);
            Ok(out)
        }
    }
}

/// Prints `Error: <err>` and, when `args` name a command, its usage (to stderr).
pub fn print_error_with_usage(
    program: &str,
    tree: &CommandTree,
    args: &[String],
    err: &anyhow::Error,
) {
    eprintln!("Error: {err:#}");
    if let Some((path, cmd)) = find_leaf(tree, args) {
        eprintln!();
        eprint!("{}", usage_text(program, &path, cmd));
    }
}

/// Candidates for the last word of `line` (the program name comes first).
pub fn complete(tree: &CommandTree, line: &str) -> Vec<String> {
    let mut words: Vec<&str> = line.split_whitespace().collect();
    if line.is_empty() || line.ends_with(char::is_whitespace) {
        words.push("");
    }
    let Some((current, before)) = words.get(1..).and_then(|w| w.split_last()) else {
        return Vec::new();
    };
    let mut node = tree;
    for word in before {
        match node {
            CommandTree::Group(entries) => match lookup(entries, word) {
                Some((_, sub)) => node = sub,
                None => return Vec::new(),
            },
            CommandTree::Leaf(_) => break,
        }
    }
    match node {
        CommandTree::Group(entries) => entries
            .iter()
            .filter(|(n, _)| n.starts_with(current))
            .map(|(n, _)| n.to_string())
            .collect(),
        CommandTree::Leaf(cmd) if current.starts_with('-') => {
            let given = current.trim_start_matches('-');
            cmd.params
                .iter()
                .filter(|p| !cmd.positionals.contains(&p.name) && p.name.starts_with(given))
                .map(|p| format!("--{}", p.name))
                .collect()
        }
        CommandTree::Leaf(_) => Vec::new(),
    }
}

/// Reads `COMP_LINE`/`COMP_POINT` (bash `complete -C`) and prints one candidate per line.
pub fn print_completions(tree: &CommandTree) {
    let line = std::env::var("COMP_LINE").unwrap_or_default();
    let point = std::env::var("COMP_POINT")
        .ok()
        .and_then(|p| p.parse::<usize>().ok())
        .unwrap_or(line.len())
        .min(line.len());
    let line = line.get(..point).unwrap_or(&line);
    for candidate in complete(tree, line) {
        println!("{candidate}");
    }
}
