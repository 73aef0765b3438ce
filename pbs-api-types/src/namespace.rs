//! Backup namespaces: a path of up to 7 `SAFE_ID` components below the datastore root.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use thiserror::Error;

use crate::names::is_safe_id;

/// Maximum number of components of a namespace (the root has depth 0).
pub const MAX_NAMESPACE_DEPTH: usize = 7;
/// Maximum length of the `/`-joined string form.
pub const MAX_BACKUP_NAMESPACE_LENGTH: usize = 256;

/// Why a namespace could not be built or parsed.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum NamespaceError {
    #[error("namespace component contained a slash")]
    ComponentContainsSlash,
    #[error("namespace too deep, {depth} >= max {MAX_NAMESPACE_DEPTH}")]
    TooDeep { depth: usize },
    #[error("namespace length exceeded")]
    TooLong,
    #[error("not a valid namespace component: {0}")]
    InvalidComponent(String),
    #[error("invalid namespace path '{0}'")]
    InvalidPath(String),
}

/// A backup namespace, e.g. `a/b` (on disk `ns/a/ns/b`). The default value is the root.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BackupNamespace {
    components: Vec<String>,
    /// Length of the `/`-joined string form, kept for the push length check.
    len: usize,
}

impl BackupNamespace {
    /// The root namespace (the datastore root directory).
    pub const fn root() -> Self {
        Self {
            components: Vec::new(),
            len: 0,
        }
    }

    /// Parses the string form `a/b/c`; the empty string is the root.
    pub fn new(name: &str) -> Result<Self, NamespaceError> {
        let mut ns = Self::root();
        if name.is_empty() {
            return Ok(ns);
        }
        for component in name.split('/') {
            ns.push_checked(component)?;
        }
        Ok(ns)
    }

    /// Parses the on-disk relative path form `ns/a/ns/b` (a trailing `/` is accepted).
    pub fn from_path(path: &str) -> Result<Self, NamespaceError> {
        let invalid = || NamespaceError::InvalidPath(path.to_string());
        let trimmed = path.strip_suffix('/').unwrap_or(path);
        let mut ns = Self::root();
        if trimmed.is_empty() {
            return Ok(ns);
        }
        let mut parts = trimmed.split('/');
        while let Some(prefix) = parts.next() {
            if prefix != "ns" {
                return Err(invalid());
            }
            let component = parts.next().ok_or_else(invalid)?;
            ns.push_checked(component)?;
        }
        Ok(ns)
    }

    /// Appends one component, enforcing the depth, length and `SAFE_ID` rules.
    pub fn push(&mut self, component: String) -> Result<(), NamespaceError> {
        self.push_checked(&component)
    }

    fn push_checked(&mut self, component: &str) -> Result<(), NamespaceError> {
        if component.contains('/') {
            return Err(NamespaceError::ComponentContainsSlash);
        }
        let depth = self.depth();
        if depth >= MAX_NAMESPACE_DEPTH {
            return Err(NamespaceError::TooDeep { depth });
        }
        if self.len + component.len() + 1 > MAX_BACKUP_NAMESPACE_LENGTH {
            return Err(NamespaceError::TooLong);
        }
        if !is_safe_id(component) {
            return Err(NamespaceError::InvalidComponent(component.to_string()));
        }
        self.len += component.len() + usize::from(!self.components.is_empty());
        self.components.push(component.to_string());
        Ok(())
    }

    /// A child namespace `self/name`.
    pub fn child(&self, name: &str) -> Result<Self, NamespaceError> {
        let mut child = self.clone();
        child.push_checked(name)?;
        Ok(child)
    }

    /// Removes and returns the last component.
    pub fn pop(&mut self) -> Option<String> {
        let last = self.components.pop()?;
        self.len -= last.len() + usize::from(!self.components.is_empty());
        Some(last)
    }

    /// The parent namespace (the root is its own parent).
    pub fn parent(&self) -> Self {
        let mut parent = self.clone();
        parent.pop();
        parent
    }

    /// Number of components (root = 0).
    pub fn depth(&self) -> usize {
        self.components.len()
    }

    /// Whether this is the root namespace.
    pub fn is_root(&self) -> bool {
        self.components.is_empty()
    }

    /// The components, outermost first.
    pub fn components(&self) -> &[String] {
        &self.components
    }

    /// The last component (`None` for the root).
    pub fn name(&self) -> Option<&str> {
        self.components.last().map(String::as_str)
    }

    /// Relative directory below the datastore root: `ns/a/ns/b` (empty for the root).
    pub fn path(&self) -> PathBuf {
        let mut path = PathBuf::new();
        for component in &self.components {
            path.push("ns");
            path.push(component);
        }
        path
    }

    /// If `other` is this namespace or below it, how many levels below it lies.
    pub fn contains(&self, other: &BackupNamespace) -> Option<usize> {
        other
            .components
            .strip_prefix(self.components.as_slice())
            .map(<[String]>::len)
    }
}

impl fmt::Display for BackupNamespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for component in &self.components {
            if !first {
                f.write_str("/")?;
            }
            first = false;
            f.write_str(component)?;
        }
        Ok(())
    }
}

impl FromStr for BackupNamespace {
    type Err = NamespaceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl Serialize for BackupNamespace {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for BackupNamespace {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        Self::new(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_of_a_b() {
        let ns = BackupNamespace::new("a/b").unwrap();
        assert_eq!(ns.path(), PathBuf::from("ns/a/ns/b"));
        assert_eq!(ns.to_string(), "a/b");
        assert_eq!(ns.depth(), 2);
        assert_eq!(ns.parent().to_string(), "a");
        assert!(ns.parent().parent().is_root());
        assert!(BackupNamespace::root().parent().is_root());
        assert_eq!(BackupNamespace::root().path(), PathBuf::new());
    }

    #[test]
    fn from_path_round_trip() {
        let ns = BackupNamespace::from_path("ns/a/ns/b").unwrap();
        assert_eq!(ns, BackupNamespace::new("a/b").unwrap());
        assert_eq!(BackupNamespace::from_path("ns/a/ns/b/").unwrap(), ns);
        assert!(BackupNamespace::from_path("").unwrap().is_root());
        for bad in ["ns", "a/b", "ns/a/b", "ns//", "ns/a/ns", "ns/.x"] {
            assert!(BackupNamespace::from_path(bad).is_err(), "{bad}");
        }
        let s = BackupNamespace::from_path(&ns.path().to_string_lossy()).unwrap();
        assert_eq!(s, ns);
    }

    #[test]
    fn depth_limit() {
        let mut ns = BackupNamespace::new("a/b/c/d/e/f/g").unwrap();
        assert_eq!(ns.depth(), MAX_NAMESPACE_DEPTH);
        let err = ns.push("h".into()).unwrap_err();
        assert_eq!(err.to_string(), "namespace too deep, 7 >= max 7");
        assert_eq!(
            BackupNamespace::new("a/b/c/d/e/f/g/h")
                .unwrap_err()
                .to_string(),
            "namespace too deep, 7 >= max 7"
        );
        assert_eq!(ns.depth(), 7);
    }

    #[test]
    fn length_limit() {
        // root: 0 + 255 + 1 = 256 is fine, 256 + 1 is not
        assert!(BackupNamespace::new(&"a".repeat(255)).is_ok());
        let err = BackupNamespace::new(&"a".repeat(256)).unwrap_err();
        assert_eq!(err.to_string(), "namespace length exceeded");

        // "x" (len 1): 1 + 254 + 1 = 256 is fine (joined string: 256 chars)
        let mut ns = BackupNamespace::new("x").unwrap();
        ns.push("b".repeat(254)).unwrap();
        assert_eq!(ns.to_string().len(), 256);
        let mut ns = BackupNamespace::new("x").unwrap();
        assert_eq!(ns.push("b".repeat(255)), Err(NamespaceError::TooLong));

        // popping restores the length budget
        let mut ns = BackupNamespace::new(&format!("x/{}", "c".repeat(200))).unwrap();
        ns.pop();
        ns.push("d".repeat(254)).unwrap();
    }

    #[test]
    fn component_rules() {
        let mut ns = BackupNamespace::root();
        assert_eq!(
            ns.push("a/b".into()).unwrap_err().to_string(),
            "namespace component contained a slash"
        );
        assert_eq!(
            ns.push(".a".into()).unwrap_err().to_string(),
            "not a valid namespace component: .a"
        );
        assert!(BackupNamespace::new("a//b").is_err());
        assert!(BackupNamespace::new("a/").is_err());
        assert!(ns.is_root());
    }

    #[test]
    fn contains_and_serde() {
        let a = BackupNamespace::new("a").unwrap();
        let abc = BackupNamespace::new("a/b/c").unwrap();
        assert_eq!(a.contains(&abc), Some(2));
        assert_eq!(abc.contains(&a), None);
        assert_eq!(BackupNamespace::root().contains(&a), Some(1));
        assert_eq!(a.contains(&BackupNamespace::new("ab").unwrap()), None);
        assert_eq!(serde_json::to_string(&abc).unwrap(), "\"a/b/c\"");
        let back: BackupNamespace = serde_json::from_str("\"a/b/c\"").unwrap();
        assert_eq!(back, abc);
        assert!(serde_json::from_str::<BackupNamespace>("\"a/-\"").is_err());
    }
}
