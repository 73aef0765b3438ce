//! Authentication and permission checks of API requests (being written).
