//! Small file system helpers shared by the crates of the project.

pub mod fs;
pub mod user;
