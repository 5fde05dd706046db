//! Which virsh, connected where: the key a session runner's pools go by,
//! and the command line each of its sessions starts from.

use crate::virsh::invocation::Invocation;

/// Which virsh, connected where: calls to one endpoint share its sessions.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct Endpoint {
    pub(super) program: String,
    pub(super) connect: Option<String>,
}

impl Endpoint {
    /// A session's own command line (no commands: they come on stdin).
    pub(super) fn invocation(&self) -> Invocation {
        Invocation {
            program: self.program.clone(),
            connect: self.connect.clone(),
            commands: Vec::new(),
        }
    }
}
