//! virsh as a typed client: one connection's calls, each through the
//! `Runner` seam (a long-lived session, or a process), many domains in one
//! batch, the output parsed by pure functions.

pub(crate) mod batch;
mod client;
pub mod descriptors;
mod documents;
pub mod domxml;
pub(crate) mod error;
#[cfg(test)]
pub(crate) mod fake;
mod fanout;
pub mod groups;
mod invocation;
mod listing;
pub(crate) mod metadata;
pub(crate) mod parse;
mod pipes;
pub(crate) mod process;
#[cfg(test)]
mod proptests;
pub(crate) mod runner;
pub(crate) mod session;
pub(crate) mod stats;
pub(crate) mod storage;
mod uri;
pub(crate) mod volumes;

pub(crate) use batch::Batch;
#[cfg(test)]
pub(crate) use client::domstats_words;
pub use client::{ListingFor, Virsh, VirshConfig, XmlRead};
pub(crate) use client::{XmlOutcome, Xmls};
pub(crate) use domxml::{Disk, DomainXml, Drive, DriveKind, Media};
pub(crate) use error::VirshError;
pub(crate) use invocation::Invocation;
pub(crate) use listing::{Listed, Listing};
pub(crate) use parse::{DomInfo, DomainState, DomainStats};
pub(crate) use process::DeadlineRunner;
pub(crate) use runner::Runner;
pub(crate) use session::{Budget, SessionRunner};
pub(crate) use storage::Volume;
pub(crate) use uri::Uri;
pub(crate) use volumes::Pool;
