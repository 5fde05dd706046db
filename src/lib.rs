//! dismount_iso_qemu: see README.md. `main.rs` only parses and maps errors;
//! everything else lives in these modules.

pub mod agent;
pub mod cli;
pub mod fleet;
pub mod media;
mod mutex;
pub mod probe;
pub mod serve;
#[cfg(test)]
mod testing;
pub mod utils;
pub mod virsh;
