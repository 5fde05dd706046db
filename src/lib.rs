//! dismount_iso_qemu: see README.md and ARCHITECTURE.md. `main.rs` only
//! parses and maps errors; everything else lives in these modules. Only
//! what the binary and the integration tests use is public, so that dead
//! code shows.

mod agent;
pub mod cli;
mod fleet;
#[cfg(test)]
mod layering;
mod media;
mod mutex;
mod probe;
mod serve;
#[cfg(test)]
mod testing;
pub mod utils;
pub mod virsh;
