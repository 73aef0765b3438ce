//! `bashcomplete`: completions for bash's `complete -C`, computed from `COMP_LINE` up to
//! `COMP_POINT`.

use pbs_cli::CommandTree;

/// Candidates for the last word of `line` (the program name comes first).
pub fn complete(tree: &CommandTree, line: &str) -> Vec<String> {
    let mut words: Vec<&str> = line.split_whitespace().collect();
    if line.is_empty() || line.ends_with(char::is_whitespace) {
        words.push("");
    }
    if words.is_empty() {
        return Vec::new();
    }
    let words = &words[1..];
    let Some((current, before)) = words.split_last() else {
        return Vec::new();
    };
    let mut node = tree;
    for word in before {
        match node {
            CommandTree::Group(entries) => {
                let exact = entries.iter().find(|(n, _)| n == word);
                let mut prefixed = entries.iter().filter(|(n, _)| n.starts_with(word));
                let found = exact.or_else(|| match (prefixed.next(), prefixed.next()) {
                    (Some(one), None) => Some(one),
                    _ => None,
                });
                match found {
                    Some((_, sub)) => node = sub,
                    None => return Vec::new(),
                }
            }
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

/// Reads `COMP_LINE`/`COMP_POINT` and prints one candidate per line.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_and_option_names() {
        let tree = crate::manager::tree::command_tree();
        let c = |line: &str| complete(&tree, line);
        assert_eq!(c("proxmox-backup-manager da"), ["datastore"]);
        assert_eq!(
            c("proxmox-backup-manager datastore "),
            ["create", "list", "remove", "show", "update"]
        );
        assert_eq!(c("proxmox-backup-manager datas s"), ["show"]);
        assert_eq!(
            c("proxmox-backup-manager datastore remove x --d"),
            ["--destroy-data", "--digest"]
        );
        assert!(c("proxmox-backup-manager datastore remove ").is_empty());
        assert!(c("proxmox-backup-manager bogus ").is_empty());
    }
}
