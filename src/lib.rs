//! dismount_iso_qemu: see README.md and ARCHITECTURE.md. `main.rs` only
//! calls [`main`] (`cli`); everything else lives in these modules. Only
//! what the binary, the integration tests and the benchmarks
//! (`benches/parsers.rs`) use is public, so that dead code shows.

mod agent;
#[cfg(test)]
mod architecture;
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
mod workers;
// The binary reaps process groups (`groups`); the integration tests
// parse fixtures (`domxml::parse_domain_xml`).
pub mod virsh;

pub use cli::main;

/// The pure parsers of virsh's and the guest agent's output, for the
/// in-process benchmarks (`benches/parsers.rs`): the listing's
/// `domstats`, `list --uuid`, `dominfo`, `guestinfo`, the storage
/// commands and the agent's file read. The domain XML parser is
/// [`virsh::domxml::parse_domain_xml`].
pub mod parsers {
    pub use crate::agent::{parse_file_read, pretty_name_from_os_release};
    pub use crate::virsh::parse::{
        parse_dominfo, parse_domstats, parse_guestinfo, parse_uuid_names,
    };
    pub use crate::virsh::volumes::{parse_pool_info, parse_vol_list_paths, parse_volume_xml};
}
