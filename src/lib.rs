//! The backup server: API router, authentication, tasks and jobs (filled by later work), and the
//! library code behind the binaries in `src/bin/`.
