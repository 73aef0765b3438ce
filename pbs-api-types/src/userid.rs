//! User ids (`name@realm`) and authentication ids (user ids or API token ids `name@realm!token`).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use thiserror::Error;

use crate::names::{is_safe_id, is_safe_id_len};

/// Minimum length of a realm name.
pub const REALM_MIN_LEN: usize = 3;
/// Maximum length of a realm name.
pub const REALM_MAX_LEN: usize = 32;
/// Length limits of a whole user id / auth id as enforced by the API schema.
pub const AUTHID_LENGTH: std::ops::RangeInclusive<usize> = 3..=64;

/// Why a user id or auth id could not be parsed.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum UseridError {
    #[error("not a valid user id")]
    NotAUserid,
    #[error("invalid user name in user id")]
    InvalidName,
    #[error("invalid realm in user id")]
    InvalidRealm,
    #[error("empty token name in userid")]
    EmptyTokenName,
    #[error("invalid token name in user id")]
    InvalidTokenName,
}

/// User name part: at least one character, no whitespace, `:`, `/` or control characters.
fn is_user_name(name: &str) -> bool {
    !name.is_empty()
        && !name
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == ':' || c == '/')
}

/// A user id `name@realm` (the name may itself contain `@` and `!`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Userid {
    data: String,
    /// Byte position of the separating `@`.
    at: usize,
}

impl Userid {
    /// The whole id.
    pub fn as_str(&self) -> &str {
        &self.data
    }

    /// The part before the last `@`.
    pub fn name(&self) -> &str {
        &self.data[..self.at]
    }

    /// The realm (after the last `@`).
    pub fn realm(&self) -> &str {
        &self.data[self.at + 1..]
    }

    /// Whether this is the superuser `root@pam`.
    pub fn is_root(&self) -> bool {
        self.data == "root@pam"
    }
}

impl FromStr for Userid {
    type Err = UseridError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let at = s.rfind('@').ok_or(UseridError::NotAUserid)?;
        if !is_user_name(&s[..at]) {
            return Err(UseridError::InvalidName);
        }
        if !is_safe_id_len(&s[at + 1..], REALM_MIN_LEN, REALM_MAX_LEN) {
            return Err(UseridError::InvalidRealm);
        }
        Ok(Self {
            data: s.to_string(),
            at,
        })
    }
}

impl fmt::Display for Userid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.data)
    }
}

/// An authentication id: a user id, or an API token id `user@realm!tokenname`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Authid {
    user: Userid,
    token: Option<String>,
}

impl Authid {
    /// The user (the token owner for tokens).
    pub fn user(&self) -> &Userid {
        &self.user
    }

    /// Whether this is an API token id.
    pub fn is_token(&self) -> bool {
        self.token.is_some()
    }

    /// The token name, if this is an API token id.
    pub fn tokenname(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// An API token id of `user`.
    pub fn token(user: Userid, tokenname: &str) -> Result<Self, UseridError> {
        if tokenname.is_empty() {
            return Err(UseridError::EmptyTokenName);
        }
        if !is_safe_id(tokenname) {
            return Err(UseridError::InvalidTokenName);
        }
        Ok(Self {
            user,
            token: Some(tokenname.to_string()),
        })
    }
}

impl From<Userid> for Authid {
    fn from(user: Userid) -> Self {
        Self { user, token: None }
    }
}

impl FromStr for Authid {
    type Err = UseridError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // A `!` only separates the token when it lies after the last `@`.
        let separator = match (s.rfind('@'), s.rfind('!')) {
            (Some(at), Some(bang)) if bang > at => Some(bang),
            _ => None,
        };
        match separator {
            Some(bang) => {
                let user = s[..bang].parse()?;
                Self::token(user, &s[bang + 1..])
            }
            None => Ok(Self::from(s.parse::<Userid>()?)),
        }
    }
}

impl fmt::Display for Authid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.token {
            Some(token) => write!(f, "{}!{}", self.user, token),
            None => write!(f, "{}", self.user),
        }
    }
}

macro_rules! serde_via_string {
    ($ty:ty) => {
        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let s = String::deserialize(deserializer)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

serde_via_string!(Userid);
serde_via_string!(Authid);

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(s: &str) -> Result<Authid, String> {
        s.parse::<Authid>().map_err(|e| e.to_string())
    }

    #[test]
    fn plain_user() {
        let a = auth("root@pam").unwrap();
        assert!(!a.is_token());
        assert_eq!(a.user().name(), "root");
        assert_eq!(a.user().realm(), "pam");
        assert!(a.user().is_root());
        assert_eq!(a.to_string(), "root@pam");
    }

    #[test]
    fn token() {
        let a = auth("write@pbs!tok-1").unwrap();
        assert!(a.is_token());
        assert_eq!(a.tokenname(), Some("tok-1"));
        assert_eq!(a.user().as_str(), "write@pbs");
        assert_eq!(a.to_string(), "write@pbs!tok-1");
        assert!(!auth("root@pam!x").unwrap().user().as_str().contains('!'));
    }

    #[test]
    fn separators_inside_name() {
        // `!` before the last `@` belongs to the name.
        let a = auth("a@b!c@pbs").unwrap();
        assert!(!a.is_token());
        assert_eq!(a.user().name(), "a@b!c");
        assert_eq!(a.user().realm(), "pbs");
        let a = auth("a@b!c@pbs!t").unwrap();
        assert_eq!(a.tokenname(), Some("t"));
        assert_eq!(a.user().name(), "a@b!c");
        let a = auth("x!@pbs").unwrap();
        assert_eq!(a.user().name(), "x!");
        assert!(!a.is_token());
    }

    #[test]
    fn errors() {
        assert_eq!(auth("nobody").unwrap_err(), "not a valid user id");
        assert_eq!(auth("a!b").unwrap_err(), "not a valid user id");
        assert_eq!(auth("@pam").unwrap_err(), "invalid user name in user id");
        assert_eq!(auth("a b@pam").unwrap_err(), "invalid user name in user id");
        assert_eq!(auth("a:b@pam").unwrap_err(), "invalid user name in user id");
        assert_eq!(auth("a/b@pam").unwrap_err(), "invalid user name in user id");
        assert_eq!(
            auth("a\u{7}@pam").unwrap_err(),
            "invalid user name in user id"
        );
        assert_eq!(auth("a@pa").unwrap_err(), "invalid realm in user id");
        assert_eq!(
            auth(&format!("a@{}", "r".repeat(33))).unwrap_err(),
            "invalid realm in user id"
        );
        assert!(auth(&format!("a@{}", "r".repeat(32))).is_ok());
        assert_eq!(auth("a@-pam").unwrap_err(), "invalid realm in user id");
        assert_eq!(auth("a@pbs!").unwrap_err(), "empty token name in userid");
        assert_eq!(
            auth("a@pbs!.t").unwrap_err(),
            "invalid token name in user id"
        );
        assert_eq!(
            "a@pbs!t".parse::<Userid>().unwrap_err().to_string(),
            "invalid realm in user id"
        );
    }

    #[test]
    fn serde_as_string() {
        let a = auth("u@pbs!t").unwrap();
        let json = serde_json::to_string(&a).unwrap();
        assert_eq!(json, "\"u@pbs!t\"");
        assert_eq!(serde_json::from_str::<Authid>(&json).unwrap(), a);
        assert!(serde_json::from_str::<Userid>("\"u@pbs!t\"").is_err());
    }
}
