//! The ticket cache `$XDG_RUNTIME_DIR/proxmox-backup/tickets`:
//! `{"<server>": {"<userid>": {"timestamp": <epoch>, "ticket": "…", "token": "<csrf>"}}}`.

use std::path::Path;

use anyhow::Result;
use serde_json::{json, Value};

use crate::xdg;

/// Lifetime of a ticket on the server.
pub const TICKET_LIFETIME: i64 = 7200;
/// Cached tickets are used (and kept) only while younger than this.
pub const TICKET_CACHE_MAX_AGE: i64 = TICKET_LIFETIME - 60;
/// File name of the cache in the runtime directory.
pub const TICKET_CACHE_FILE: &str = "tickets";

fn now() -> i64 {
    pbs_api_types::time::epoch_now()
}

/// A cached ticket with its CSRF token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CachedTicket {
    pub ticket: String,
    pub csrf_token: String,
}

/// Reads the ticket of `userid` on `server` from `path` if it is young enough at `now`.
pub fn load_ticket_from(path: &Path, server: &str, userid: &str, now: i64) -> Option<CachedTicket> {
    let data = xdg::read_json_file(path).ok()?;
    let entry = &data[server][userid];
    let timestamp = entry["timestamp"].as_i64()?;
    if now - timestamp >= TICKET_CACHE_MAX_AGE {
        return None;
    }
    Some(CachedTicket {
        ticket: entry["ticket"].as_str()?.to_string(),
        csrf_token: entry["token"].as_str()?.to_string(),
    })
}

/// Stores a ticket at `now`, dropping all entries that are too old.
pub fn store_ticket_in(
    path: &Path,
    server: &str,
    userid: &str,
    ticket: &CachedTicket,
    now: i64,
) -> Result<()> {
    let mut data = xdg::read_json_file(path).unwrap_or_else(|_| json!({}));
    if !data.is_object() {
        data = json!({});
    }
    data[server][userid] = json!({
        "timestamp": now,
        "ticket": ticket.ticket,
        "token": ticket.csrf_token,
    });
    let mut pruned = serde_json::Map::new();
    if let Value::Object(servers) = data {
        for (server, users) in servers {
            let Value::Object(users) = users else {
                continue;
            };
            let kept: serde_json::Map<String, Value> = users
                .into_iter()
                .filter(|(_, entry)| {
                    entry["timestamp"]
                        .as_i64()
                        .is_some_and(|ts| now - ts < TICKET_CACHE_MAX_AGE)
                })
                .collect();
            if !kept.is_empty() {
                pruned.insert(server, Value::Object(kept));
            }
        }
    }
    let text = serde_json::to_string_pretty(&Value::Object(pruned))?;
    xdg::replace_file(path, text.as_bytes(), 0o600)
}

/// Removes the entry of `userid` on `server`; a missing file or entry is fine.
pub fn delete_ticket_in(path: &Path, server: &str, userid: &str) -> Result<()> {
    if !path.exists() {
        return Ok(());
    }
    let mut data = xdg::read_json_file(path)?;
    let Some(users) = data.get_mut(server).and_then(Value::as_object_mut) else {
        return Ok(());
    };
    if users.remove(userid).is_none() {
        return Ok(());
    }
    let text = serde_json::to_string_pretty(&data)?;
    xdg::replace_file(path, text.as_bytes(), 0o600)
}

/// The cached ticket of `userid` on `server` in the user's runtime directory.
pub fn load_ticket(server: &str, userid: &str) -> Option<CachedTicket> {
    let path = xdg::runtime_file(TICKET_CACHE_FILE)?;
    load_ticket_from(&path, server, userid, now())
}

/// Caches a fresh ticket in the user's runtime directory.
pub fn store_ticket(server: &str, userid: &str, ticket: &CachedTicket) -> Result<()> {
    let path = xdg::place_runtime_file(TICKET_CACHE_FILE)?;
    store_ticket_in(&path, server, userid, ticket, now())
}

/// Removes a cached ticket from the user's runtime directory.
pub fn delete_ticket(server: &str, userid: &str) -> Result<()> {
    match xdg::runtime_file(TICKET_CACHE_FILE) {
        Some(path) => delete_ticket_in(&path, server, userid),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn ticket(name: &str) -> CachedTicket {
        CachedTicket {
            ticket: format!("PBS:{name}"),
            csrf_token: format!("csrf-{name}"),
        }
    }

    #[test]
    fn store_load_prune_delete() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tickets");
        let t0 = 1_700_000_000;
        store_ticket_in(&path, "host1", "root@pam", &ticket("a"), t0).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(
            load_ticket_from(&path, "host1", "root@pam", t0 + 7139),
            Some(ticket("a"))
        );
        assert_eq!(
            load_ticket_from(&path, "host1", "root@pam", t0 + 7140),
            None
        );
        assert_eq!(load_ticket_from(&path, "host2", "root@pam", t0), None);

        // Writing later drops entries that are too old, keeps young ones.
        store_ticket_in(&path, "host2", "u@pbs", &ticket("b"), t0 + 100).unwrap();
        store_ticket_in(&path, "[::1]", "u@pbs", &ticket("c"), t0 + 7140).unwrap();
        let data = xdg::read_json_file(&path).unwrap();
        assert!(data.get("host1").is_none(), "{data}");
        assert_eq!(data["host2"]["u@pbs"]["timestamp"], t0 + 100);
        assert_eq!(data["host2"]["u@pbs"]["ticket"], "PBS:b");
        assert_eq!(data["host2"]["u@pbs"]["token"], "csrf-b");
        assert_eq!(data["[::1]"]["u@pbs"]["ticket"], "PBS:c");

        delete_ticket_in(&path, "host2", "u@pbs").unwrap();
        assert_eq!(load_ticket_from(&path, "host2", "u@pbs", t0 + 200), None);
        assert!(load_ticket_from(&path, "[::1]", "u@pbs", t0 + 7140).is_some());
        delete_ticket_in(&path, "nohost", "u@pbs").unwrap();
        delete_ticket_in(&dir.path().join("missing"), "x", "y").unwrap();
    }
}
