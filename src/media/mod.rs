//! ISO media over one connection (MediaManager): every drive's media, live
//! and in the persistent config, read in a fixed number of virsh calls;
//! ISOs resolved and checked; planned changes run and verified.

mod boot;
mod copy;
mod domain;
mod fifo;
mod iso;
mod library;
mod manager;
pub mod migrate;
mod plan;
mod rows;
mod upload;

pub use boot::{
    BOOT_RECORD_LEN, BOOT_RECORD_OFFSET, BootPlan, is_el_torito_boot_record, plan_boot,
};
pub use copy::SourceVolume;
pub use domain::{DomainMedia, DriveChoice, IsoDrive, names_or_none};
pub use fifo::PrivateDir;
pub use iso::IsoName;
pub use iso::{has_iso9660_signature, open_never_blocking};
pub use library::{Files, LibraryEntry};
pub use manager::MediaManager;
pub use plan::{Action, Step, Verdict, plan_attach, plan_eject, plan_ejects, plan_mount};
pub use rows::{DriveRow, holders};
pub use upload::{LocalIso, UploadOptions, Uploaded, check_file};

#[cfg(test)]
mod tests;
