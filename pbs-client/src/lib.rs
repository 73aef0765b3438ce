//! Backup client library.
//!
//! * [`pxar`]: creating pxar archives from a Linux directory tree, extracting them, FUSE access.
//! * [`repository`], [`tools`]: repository strings, secrets, per-user files, connecting.
//! * [`http_client`], [`h2`]: the HTTPS API client and HTTP/2 backup/reader sessions.
//! * [`backup_writer`], [`backup_reader`], [`remote_chunk_reader`], [`restore`]: writing and
//!   reading snapshots over the backup and reader protocols.

pub mod api_client;
pub mod backup_reader;
pub mod backup_writer;
pub mod catalog_shell;
pub mod h2;
pub mod http_client;
pub mod inject;
pub mod proxy;
pub mod pxar;
pub mod pxar_backup_stream;
pub mod query;
pub mod rate_limit;
pub mod remote_chunk_reader;
pub mod repository;
pub mod restore;
pub mod task_log;
pub mod ticket_cache;
pub mod tls;
pub mod tools;
pub mod xdg;

pub use h2::H2Client;
pub use http_client::{HttpClient, HttpClientOptions, HttpError};
pub use repository::BackupRepository;
