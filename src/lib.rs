//! The backup server: API router, authentication, tasks and jobs (arriving with later work), and
//! the library code behind the binaries in `src/bin/`.

pub mod debug;
