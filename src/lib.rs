//! dismount_iso_qemu: see README.md and ARCHITECTURE.md. `main.rs` only
//! parses and maps errors; everything else lives in these modules. Only
//! what the binary and the integration tests use is public, so that dead
//! code shows.

mod agent;
mod cli;
mod fleet;
#[cfg(test)]
mod layering;
mod media;
mod mutex;
mod probe;
mod serve;
#[cfg(test)]
mod testing;
mod utils;
// The binary reaps process groups (`groups`); the integration tests
// parse fixtures (`domxml::parse_domain_xml`).
pub mod virsh;

pub use cli::{Args, complete_from_env, is_broken_pipe, run};
pub use utils::sanitize;
