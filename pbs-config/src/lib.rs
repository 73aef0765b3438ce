//! Configuration files of the server: the section-config format and every file that uses
//! it, ACLs with effective privileges, and the password and token secret stores.

pub mod acl;
pub mod cached_user_info;
pub mod crypt;
pub mod datastore;
pub mod files;
pub mod jobs;
pub mod privileges;
pub mod property_string;
pub mod remote;
pub mod section_config;
pub mod shadow;
pub mod token_shadow;
pub mod user;

pub use cached_user_info::{CachedUserInfo, PermissionError};
pub use files::{check_digest, compute_digest, ConfigFile, ConfigLockGuard, DigestMismatch};
pub use section_config::{SectionConfig, SectionConfigData};
