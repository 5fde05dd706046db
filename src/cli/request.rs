//! What a media subcommand (`isos`, `mount`, `eject`) was asked to do,
//! free of clap types.

use regex::Regex;

use super::args::ChangeArgs;

/// How a change is carried out, free of clap types.
#[derive(Debug, Clone, Copy, Default)]
pub struct ChangeOptions {
    pub yes: bool,
    pub dry_run: bool,
    pub force: bool,
}

impl From<&ChangeArgs> for ChangeOptions {
    fn from(args: &ChangeArgs) -> Self {
        ChangeOptions {
            yes: args.yes,
            dry_run: args.dry_run,
            force: args.force,
        }
    }
}

/// Which drives `isos` shows.
#[derive(Debug, Clone, Default)]
pub struct IsoQuery {
    pub mounted: bool,
    pub iso: Option<String>,
    /// `--match`: only domains whose name matches.
    pub pattern: Option<Regex>,
}

/// What `eject` acts on.
#[derive(Debug, Clone)]
pub enum EjectSelection {
    Domain {
        name: String,
        target: Option<String>,
    },
    All,
    Iso(String),
    /// Every drive of the domains whose name matches.
    Matching(Regex),
}

impl EjectSelection {
    /// From `eject`'s arguments, of which clap lets exactly one through.
    pub fn new(
        domain: Option<String>,
        target: Option<String>,
        all: bool,
        iso: Option<String>,
        pattern: Option<Regex>,
    ) -> Self {
        if let Some(pattern) = pattern {
            return EjectSelection::Matching(pattern);
        }
        match (domain, iso) {
            _ if all => EjectSelection::All,
            (_, Some(iso)) => EjectSelection::Iso(iso),
            (name, None) => EjectSelection::Domain {
                name: name.unwrap_or_default(),
                target,
            },
        }
    }
}

/// What `mount` was asked to do.
#[derive(Debug, Clone)]
pub struct MountRequest {
    pub selection: MountSelection,
    pub iso: String,
    pub target: Option<String>,
    /// Add a SATA CD-ROM when the VM has none.
    pub attach: bool,
    /// `--upload FILE --pool POOL`: uploaded to the VM's host first, the
    /// volume then mounted.
    pub upload: Option<super::upload::UploadRequest>,
}

/// Which VMs `mount` acts on.
#[derive(Debug, Clone)]
pub enum MountSelection {
    Domain(String),
    /// The VMs whose name matches: one, or with `all` every one.
    Matching {
        pattern: Regex,
        all: bool,
    },
}
