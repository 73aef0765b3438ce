//! Types, ID rules and schemas shared by the server, the client and the tools.

pub mod crypto;
pub mod datastore;
pub mod names;
pub mod namespace;
pub mod prune;
pub mod time;
pub mod upid;
pub mod userid;

pub use crypto::{CryptMode, Fingerprint};
pub use datastore::{BackupDir, BackupGroup, BackupPathError, BackupType};
pub use namespace::{BackupNamespace, NamespaceError, MAX_NAMESPACE_DEPTH};
pub use prune::KeepOptions;
pub use upid::{UpidError, UPID};
pub use userid::{Authid, Userid, UseridError};
