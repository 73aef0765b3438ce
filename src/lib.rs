//! The backup server: the REST API, authentication, daemon plumbing, and the library code behind
//! the binaries in `src/bin/`.

pub mod api2;
pub mod auth;
pub mod debug;
pub mod manager;
pub mod server;
