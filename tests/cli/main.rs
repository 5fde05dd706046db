//! The integration tests that need no harness of their own (the lab's
//! targets each run under libtest-mimic): one binary of modules, so that
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
