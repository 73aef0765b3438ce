//! Repository strings `[[auth-id@]server[:port]:]datastore`.

use std::fmt;
use std::net::Ipv6Addr;
use std::str::FromStr;

use anyhow::{bail, format_err, Error};

use pbs_api_types::names::is_safe_id;
use pbs_api_types::Authid;

/// Port of the backup server when the repository names none.
pub const DEFAULT_PORT: u16 = 8007;
/// Host when the repository names none.
pub const DEFAULT_HOST: &str = "localhost";
/// Auth id when the repository names none.
pub const DEFAULT_AUTH_ID: &str = "root@pam";

/// A parsed repository: who connects where to which datastore.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackupRepository {
    auth_id: Option<Authid>,
    host: Option<String>,
    port: Option<u16>,
    store: String,
}

impl BackupRepository {
    /// Builds a repository; a bare IPv6 address as host is wrapped in brackets.
    pub fn new(
        auth_id: Option<Authid>,
        host: Option<String>,
        port: Option<u16>,
        store: String,
    ) -> Self {
        let host = host.map(|host| {
            if host.parse::<Ipv6Addr>().is_ok() {
                format!("[{host}]")
            } else {
                host
            }
        });
        Self {
            auth_id,
            host,
            port,
            store,
        }
    }

    /// The auth id (default `root@pam`).
    pub fn auth_id(&self) -> &Authid {
        match &self.auth_id {
            Some(auth_id) => auth_id,
            None => default_auth_id(),
        }
    }

    /// The auth id as given, if any.
    pub fn explicit_auth_id(&self) -> Option<&Authid> {
        self.auth_id.as_ref()
    }

    /// The host as written (IPv6 in brackets; default `localhost`).
    pub fn host(&self) -> &str {
        self.host.as_deref().unwrap_or(DEFAULT_HOST)
    }

    /// The port (default 8007).
    pub fn port(&self) -> u16 {
        self.port.unwrap_or(DEFAULT_PORT)
    }

    /// The datastore name.
    pub fn store(&self) -> &str {
        &self.store
    }
}

fn default_auth_id() -> &'static Authid {
    static DEFAULT: std::sync::OnceLock<Authid> = std::sync::OnceLock::new();
    DEFAULT.get_or_init(|| {
        DEFAULT_AUTH_ID
            .parse()
            .unwrap_or_else(|_| unreachable!("the default auth id is valid"))
    })
}

impl fmt::Display for BackupRepository {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.auth_id, &self.host, self.port) {
            (Some(auth_id), _, _) => write!(
                f,
                "{auth_id}@{}:{}:{}",
                self.host(),
                self.port(),
                self.store
            ),
            (None, Some(host), None) => write!(f, "{host}:{}", self.store),
            (None, _, Some(port)) => write!(f, "{}:{port}:{}", self.host(), self.store),
            (None, None, None) => write!(f, "{}", self.store),
        }
    }
}

/// The pieces of a repository string as matched by the grammar, before validation.
#[derive(Debug, PartialEq, Eq)]
struct RepositoryMatch<'a> {
    auth_id: Option<&'a str>,
    host: Option<&'a str>,
    port: Option<&'a str>,
    store: &'a str,
}

impl FromStr for BackupRepository {
    type Err = Error;

    fn from_str(url: &str) -> Result<Self, Error> {
        let Some(matched) = match_repository(url) else {
            bail!("unable to parse repository url '{url}'");
        };
        let auth_id = matched
            .auth_id
            .map(|text| text.parse::<Authid>().map_err(|err| format_err!("{err}")))
            .transpose()?;
        let port = matched
            .port
            .map(|text| text.parse::<u16>().map_err(|err| format_err!("{err}")))
            .transpose()?;
        Ok(Self {
            auth_id,
            host: matched.host.map(str::to_string),
            port,
            store: matched.store.to_string(),
        })
    }
}

/// Whether `url` matches the repository grammar (the option schema's pattern).
pub fn matches_grammar(url: &str) -> bool {
    match_repository(url).is_some()
}

/// Matches `^(?:(?:(USERID|TOKENID)@)?(DNS_NAME|IP_BRACKET):)?(?:([0-9]{1,5}):)?(SAFE_ID)$`.
///
/// No component but a bracketed IPv6 host can contain `:`, and a host never contains `@`, so
/// each optional group has at most one possible extent; trying the groups present before the
/// groups absent gives the same captures as the greedy regex.
fn match_repository(url: &str) -> Option<RepositoryMatch<'_>> {
    if let Some((group, rest)) = split_host_group(url) {
        let (auth_id, host) = match group.rfind('@') {
            Some(at) => (Some(&group[..at]), &group[at + 1..]),
            None => (None, group),
        };
        let auth_ok = auth_id.is_none_or(is_auth_id_pattern);
        if auth_ok && is_host_pattern(host) {
            if let Some((port, store)) = match_port_and_store(rest) {
                return Some(RepositoryMatch {
                    auth_id,
                    host: Some(host),
                    port,
                    store,
                });
            }
        }
    }
    let (port, store) = match_port_and_store(url)?;
    Some(RepositoryMatch {
        auth_id: None,
        host: None,
        port,
        store,
    })
}

/// Splits `[auth@]host:rest` at the colon ending the host (after `]` for bracketed hosts).
fn split_host_group(url: &str) -> Option<(&str, &str)> {
    let colon = url.find(':')?;
    let end = if url[..colon].contains('[') {
        let close = url.find(']')?;
        if url.as_bytes().get(close + 1) != Some(&b':') {
            return None;
        }
        close + 1
    } else {
        colon
    };
    Some((&url[..end], &url[end + 1..]))
}

/// `(?:([0-9]{1,5}):)?(SAFE_ID)`
fn match_port_and_store(text: &str) -> Option<(Option<&str>, &str)> {
    if let Some((port, store)) = text.split_once(':') {
        let port_ok = (1..=5).contains(&port.len()) && port.bytes().all(|b| b.is_ascii_digit());
        return (port_ok && is_safe_id(store)).then_some((Some(port), store));
    }
    is_safe_id(text).then_some((None, text))
}

/// `USER@REALM` or `USER@REALM!TOKENNAME` (realm length is checked later by `Authid`).
fn is_auth_id_pattern(text: &str) -> bool {
    let userid = match text.rfind('!') {
        Some(bang) if is_safe_id(&text[bang + 1..]) && is_userid_pattern(&text[..bang]) => {
            return true
        }
        _ => text,
    };
    is_userid_pattern(userid)
}

fn is_userid_pattern(text: &str) -> bool {
    match text.rfind('@') {
        Some(at) => is_user_name_pattern(&text[..at]) && is_safe_id(&text[at + 1..]),
        None => false,
    }
}

/// `[^\s:/[:cntrl:]]+`
fn is_user_name_pattern(name: &str) -> bool {
    !name.is_empty()
        && !name
            .chars()
            .any(|c| c.is_whitespace() || c.is_ascii_control() || c == ':' || c == '/')
}

fn is_host_pattern(host: &str) -> bool {
    if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return inner.parse::<Ipv6Addr>().is_ok();
    }
    is_dns_name(host)
}

/// Labels `[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?` joined by `.`.
fn is_dns_name(host: &str) -> bool {
    host.split('.').all(|label| {
        let bytes = label.as_bytes();
        match (bytes.first(), bytes.last()) {
            (Some(first), Some(last)) => {
                first.is_ascii_alphanumeric()
                    && last.is_ascii_alphanumeric()
                    && bytes
                        .iter()
                        .all(|b| b.is_ascii_alphanumeric() || *b == b'-')
            }
            _ => false,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// input, auth-id, host, port, store, display form
    #[allow(clippy::type_complexity)]
    const ACCEPTED: &[(&str, Option<&str>, Option<&str>, Option<u16>, &str, &str)] = &[
        (
            "mydatastore",
            None,
            None,
            None,
            "mydatastore",
            "mydatastore",
        ),
        ("ds", None, None, None, "ds", "ds"),
        (
            "myhostname:mydatastore",
            None,
            Some("myhostname"),
            None,
            "mydatastore",
            "myhostname:mydatastore",
        ),
        ("x:ds", None, Some("x"), None, "ds", "x:ds"),
        (
            "MyHost.example.com:store",
            None,
            Some("MyHost.example.com"),
            None,
            "store",
            "MyHost.example.com:store",
        ),
        (
            "8008:store",
            None,
            Some("8008"),
            None,
            "store",
            "8008:store",
        ),
        (
            "192.168.55.55:1234:mydatastore",
            None,
            Some("192.168.55.55"),
            Some(1234),
            "mydatastore",
            "192.168.55.55:1234:mydatastore",
        ),
        (
            "host:0:store",
            None,
            Some("host"),
            Some(0),
            "store",
            "host:0:store",
        ),
        (
            "[ff80::51]:mydatastore",
            None,
            Some("[ff80::51]"),
            None,
            "mydatastore",
            "[ff80::51]:mydatastore",
        ),
        (
            "[ff80::51]:1234:mydatastore",
            None,
            Some("[ff80::51]"),
            Some(1234),
            "mydatastore",
            "[ff80::51]:1234:mydatastore",
        ),
        (
            "[::1]:store",
            None,
            Some("[::1]"),
            None,
            "store",
            "[::1]:store",
        ),
        (
            "[::ffff:192.168.1.1]:8007:st",
            None,
            Some("[::ffff:192.168.1.1]"),
            Some(8007),
            "st",
            "[::ffff:192.168.1.1]:8007:st",
        ),
        (
            "user@pbs@myhostname:mydatastore",
            Some("user@pbs"),
            Some("myhostname"),
            None,
            "mydatastore",
            "user@pbs@myhostname:8007:mydatastore",
        ),
        (
            "root@pam@localhost:8007:store",
            Some("root@pam"),
            Some("localhost"),
            Some(8007),
            "store",
            "root@pam@localhost:8007:store",
        ),
        (
            "a@b@pam@host:store",
            Some("a@b@pam"),
            Some("host"),
            None,
            "store",
            "a@b@pam@host:8007:store",
        ),
        (
            "user@pbs!token@host:store",
            Some("user@pbs!token"),
            Some("host"),
            None,
            "store",
            "user@pbs!token@host:8007:store",
        ),
        (
            "user@pbs!a.b@host:store",
            Some("user@pbs!a.b"),
            Some("host"),
            None,
            "store",
            "user@pbs!a.b@host:8007:store",
        ),
        (
            "user@pbs!tok@[fe80::1]:8007:store",
            Some("user@pbs!tok"),
            Some("[fe80::1]"),
            Some(8007),
            "store",
            "user@pbs!tok@[fe80::1]:8007:store",
        ),
        (
            "host:_store",
            None,
            Some("host"),
            None,
            "_store",
            "host:_store",
        ),
        (
            "1.2.3.4.5:store",
            None,
            Some("1.2.3.4.5"),
            None,
            "store",
            "1.2.3.4.5:store",
        ),
        (
            "256.1.1.1:store",
            None,
            Some("256.1.1.1"),
            None,
            "store",
            "256.1.1.1:store",
        ),
    ];

    #[test]
    fn accepted_vectors() {
        for (input, auth_id, host, port, store, display) in ACCEPTED {
            let repo: BackupRepository =
                input.parse().unwrap_or_else(|err| panic!("{input}: {err}"));
            assert_eq!(
                repo.explicit_auth_id().map(|a| a.to_string()).as_deref(),
                *auth_id,
                "{input}"
            );
            assert_eq!(repo.host.as_deref(), *host, "{input}");
            assert_eq!(repo.port, *port, "{input}");
            assert_eq!(repo.store(), *store, "{input}");
            assert_eq!(repo.to_string(), *display, "{input}");
        }
    }

    #[test]
    fn auth_id_with_at_in_user_name() {
        let repo: BackupRepository = "a@b@pam@host:store".parse().unwrap();
        assert_eq!(repo.auth_id().user().name(), "a@b");
        assert_eq!(repo.auth_id().user().realm(), "pam");
    }

    #[test]
    fn defaults() {
        let repo: BackupRepository = "mydatastore".parse().unwrap();
        assert_eq!(repo.auth_id().to_string(), "root@pam");
        assert_eq!(repo.host(), "localhost");
        assert_eq!(repo.port(), 8007);
        let repo: BackupRepository = "8008:store".parse().unwrap();
        assert_eq!(repo.host(), "8008");
        assert_eq!(repo.port(), 8007);
    }

    #[test]
    fn rejected_vectors() {
        let no_match = [
            "ff80::51:mydatastore",
            "user@host:store",
            "user@pbs:store",
            "user@pbs!@host:store",
            "my_host:store",
            "host-:store",
            "-host:store",
            "host:store:x",
            "h:1:2:store",
            "host:.store",
            "user name@pbs@host:store",
            "user/x@pbs@host:store",
        ];
        for input in no_match {
            let err = input.parse::<BackupRepository>().unwrap_err();
            assert_eq!(
                err.to_string(),
                format!("unable to parse repository url '{input}'")
            );
        }
        let err = "user@pb@host:store"
            .parse::<BackupRepository>()
            .unwrap_err();
        assert_eq!(err.to_string(), "invalid realm in user id");
        let err = "host:99999:store".parse::<BackupRepository>().unwrap_err();
        assert_eq!(err.to_string(), "number too large to fit in target type");
    }

    #[test]
    fn constructor_brackets_ipv6_hosts() {
        let repo = BackupRepository::new(None, Some("fe80::1".into()), Some(8008), "st".into());
        assert_eq!(repo.host(), "[fe80::1]");
        assert_eq!(repo.to_string(), "[fe80::1]:8008:st");
        let repo = BackupRepository::new(None, None, Some(8008), "st".into());
        assert_eq!(repo.to_string(), "localhost:8008:st");
    }
}
