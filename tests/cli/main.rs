//! The integration tests that need no harness of their own (the lab's
//! run under libtest-mimic: tests/lab): one binary of modules, so that
//! `cargo test` links them once.

#[path = "../common/mod.rs"]
mod common;

mod boot_iso;
mod hosts;
mod library;
mod media;
mod migrate;
mod serve;
mod status;
mod toolbox;
