//! End-to-end tests of the conflux daemon (see `tests/`).
