//! Daemon start-up, reload and shutdown (being written).
