//! Helpers for the client commands.

mod xdg;

pub use xdg::{xdg_config_file, xdg_config_place};
