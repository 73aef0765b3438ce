//! Types, ID rules and schemas shared by the server, the client and the tools.

pub mod crypto;
pub mod time;

pub use crypto::{CryptMode, Fingerprint};
