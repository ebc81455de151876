//! End-to-end tests of the `pal` command line live in `tests/`.
