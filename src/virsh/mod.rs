//! virsh as a typed client: one connection's calls, each through the
//! `Runner` seam (a long-lived session, or a process), many domains in one
//! batch, the output parsed by pure functions.

pub(crate) mod batch;
mod documents;
pub mod domxml;
pub(crate) mod error;
#[cfg(test)]
pub(crate) mod fake;
pub mod groups;
mod listing;
pub(crate) mod metadata;
pub(crate) mod parse;
#[cfg(test)]
mod proptests;
pub(crate) mod runner;
pub(crate) mod session;
mod uri;
pub(crate) mod volumes;

use std::collections::HashMap;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

pub(crate) use batch::Batch;
pub(crate) use domxml::{DomainXml, Drive, DriveKind, Media};
pub(crate) use error::VirshError;
pub(crate) use listing::{Listed, Listing};
pub(crate) use parse::{DomInfo, DomainState, DomainStats};
pub(crate) use runner::{Invocation, Output, Runner};
pub(crate) use session::SessionRunner;
pub(crate) use uri::Uri;

/// How to reach virsh and the hypervisor behind it.
#[derive(Debug, Clone)]
pub struct VirshConfig {
    /// The binary, looked up on PATH when it has no slash.
    pub program: String,
    /// `-c URI`; `None` lets virsh apply its own default
    /// (`LIBVIRT_DEFAULT_URI`, then its configuration).
    pub connect: Option<String>,
    /// Bounds every single virsh call.
    pub timeout: Duration,
    /// How many virsh sessions one connection may use side by side.
    pub sessions: usize,
}

#[derive(Clone)]
pub struct Virsh {
    config: VirshConfig,
    runner: Arc<dyn Runner>,
}

/// Below this many commands a batch stays on one session: a second one
/// costs a process (over ssh, a handshake) before it saves anything.
const COMMANDS_PER_SESSION: usize = 200;

/// The `domstats` groups the metrics come from; a driver without some of
/// them (the test driver has only `state`) simply leaves their keys out.
pub(crate) const METRIC_GROUPS: [&str; 3] = ["--cpu-total", "--balloon", "--vcpu"];

impl Virsh {
    pub fn new(config: VirshConfig, runner: Arc<dyn Runner>) -> Self {
        Virsh { config, runner }
    }

    pub fn config(&self) -> &VirshConfig {
        &self.config
    }

    /// The connection as users know it, for messages.
    pub fn uri_label(&self) -> &str {
        self.config
            .connect
            .as_deref()
            .unwrap_or("virsh's default URI")
    }

    /// One command (its words) on this connection.
    pub fn invocation<S: AsRef<str>>(&self, words: &[S]) -> Invocation {
        self.script(vec![words.iter().map(|w| w.as_ref().to_owned()).collect()])
    }

    /// Several commands run in one connection.
    fn script(&self, commands: Vec<Vec<String>>) -> Invocation {
        Invocation {
            program: self.config.program.clone(),
            connect: self.config.connect.clone(),
            commands,
        }
    }

    /// Starts, ahead of the first call, the sessions that calls side by
    /// side will use (over ssh each is a handshake): for a scan.
    pub fn warm_up(&self) {
        self.runner.warm_up(&self.script(Vec::new()));
    }

    /// Runs one process through the runner, explaining timeouts over ssh.
    fn spawn(&self, invocation: &Invocation) -> Result<Output, VirshError> {
        self.runner
            .run(invocation, self.config.timeout)
            .map_err(|error| match error {
                VirshError::Timeout { command, timeout } if self.over_ssh() => {
                    VirshError::SshTimeout { command, timeout }
                }
                other => other,
            })
    }

    /// Whether the URI's transport is ssh (`qemu+ssh://`, `+libssh2`, …).
    fn over_ssh(&self) -> bool {
        self.config
            .connect
            .as_deref()
            .is_some_and(|uri| Uri::parse(uri).over_ssh())
    }

    /// Runs one command; a non-zero exit becomes `VirshError::Failed`.
    pub fn run<S: AsRef<str>>(&self, args: &[S]) -> Result<Output, VirshError> {
        let invocation = self.invocation(args);
        let output = self.spawn(&invocation)?;
        if output.status.success() {
            Ok(output)
        } else {
            Err(VirshError::Failed {
                command: invocation.summary(),
                status: output.status,
                stderr: output.stderr,
            })
        }
    }

    /// Runs a batch (in one process, or one per 96 KiB of script) and
    /// returns each marker's section (see `Batch::split`). Failures of
    /// single commands are expected (a domain vanished); only a process
    /// that printed no section at all is an error, with virsh's stderr as
    /// the reason.
    pub fn run_batch(&self, batch: &Batch) -> Result<Vec<Option<String>>, VirshError> {
        let mut sections = Vec::with_capacity(batch.command_count());
        for piece in batch.pieces() {
            let invocation = self.script(piece.commands);
            let output = self.spawn(&invocation)?;
            let piece_sections = batch.split(piece.range, &output.stdout);
            if piece_sections.iter().all(Option::is_none) {
                // Silent and "successful", yet no marker: not virsh's output.
                if output.status.success() && output.stderr.trim().is_empty() {
                    return Err(VirshError::Unusable {
                        command: invocation.summary(),
                        what: "none of the batch's markers came back".to_owned(),
                    });
                }
                return Err(VirshError::Failed {
                    command: invocation.summary(),
                    status: output.status,
                    stderr: output.stderr,
                });
            }
            sections.extend(piece_sections.into_iter().map(|s| s.map(str::to_owned)));
        }
        Ok(sections)
    }

    /// The same client with another bound on each process.
    pub fn with_timeout(&self, timeout: Duration) -> Virsh {
        let mut config = self.config.clone();
        config.timeout = timeout;
        Virsh {
            config,
            runner: Arc::clone(&self.runner),
        }
    }

    /// Every domain in one process, naming none: its stats
    /// (`domstats`: state everywhere; for [`ListingFor::Scan`] on QEMU also
    /// CPU, balloon and vCPUs, inactive domains included), for a scan its
    /// UUID (`list --all --uuid --name`: one `UUID NAME` a line), which
    /// domains are transient, and the connection's own URI (`uri`).
    pub fn list_all(&self, purpose: ListingFor) -> Result<Listing, VirshError> {
        let domstats = domstats_words(purpose);
        let scan = purpose == ListingFor::Scan;
        let mut batch = Batch::new();
        batch.push(&domstats);
        if scan {
            batch.push(&["list", "--all", "--uuid", "--name"]);
        }
        batch.push(&["list", "--transient", "--name"]);
        batch.push(&["uri"]);
        let mut sections = self
            .run_batch(&batch)?
            .into_iter()
            .map(Option::unwrap_or_default);
        let mut next = || sections.next().unwrap_or_default();
        let domstats_text = next();
        let parsed = parse::parse_domstats(&domstats_text);
        // Text without one `Domain:` block is no listing, not an empty host.
        if parsed.is_empty() && !domstats_text.trim().is_empty() {
            return Err(VirshError::Unusable {
                command: self.invocation(&domstats).summary(),
                what: "no `Domain:` block in its output".to_owned(),
            });
        }
        let uuids = if scan {
            parse::parse_uuid_names(&next())
        } else {
            HashMap::new()
        };
        Ok(Listing {
            stats: parsed,
            uuids,
            transient: next()
                .lines()
                .filter(|name| !name.is_empty())
                .map(str::to_owned)
                .collect(),
            uri: Some(next().trim().to_owned()).filter(|uri| !uri.is_empty()),
        })
    }

    /// Whether the connection has a domain called `name`; `Err` when the
    /// connection itself fails.
    pub fn has_domain(&self, name: &str) -> Result<bool, VirshError> {
        match self.run(&["domuuid", "--domain", name]) {
            Ok(_) => Ok(true),
            Err(error)
                if error
                    .virsh_message()
                    .is_some_and(|message| message.starts_with("failed to get domain")) =>
            {
                Ok(false)
            }
            Err(error) => Err(error),
        }
    }

    /// The `dominfo` of each name (what a driver's stats leave out: the
    /// test driver's have state only), in one batch.
    pub fn dominfo_many(&self, names: &[&str]) -> Result<Vec<Option<DomInfo>>, VirshError> {
        Ok(self
            .per_domain(names, &["dominfo"])?
            .into_iter()
            .map(|section| section.map(|text| parse::parse_dominfo(&text)))
            .collect())
    }

    /// The live `dumpxml` (the persistent one for an inactive domain) of
    /// each name, batched into one process.
    pub fn dumpxml_many(&self, names: &[&str]) -> Result<Vec<Option<String>>, VirshError> {
        self.per_domain(names, &["dumpxml"])
    }

    /// Which of `paths` are storage volumes, in one process:
    /// `vol-info --vol PATH` takes a path as one word, spaces and all, and
    /// prints nothing for a path no pool holds.
    pub fn volumes_exist(&self, paths: &[&str]) -> Result<Vec<bool>, VirshError> {
        let mut batch = Batch::new();
        for path in paths {
            batch.push(&["vol-info", "--vol", path]);
        }
        Ok(self
            .run_batch(&batch)?
            .into_iter()
            .map(|section| section.is_some_and(|text| !text.trim().is_empty()))
            .collect())
    }

    /// The paths of every volume in every active storage pool, in two
    /// processes whatever the number of pools.
    pub fn volume_paths(&self) -> Result<Vec<String>, VirshError> {
        let pools = self.run(&["pool-list", "--name"])?.stdout;
        let mut batch = Batch::new();
        // `pool-list --name` pads names with blanks on the right.
        for pool in pools.lines().map(str::trim_end).filter(|p| !p.is_empty()) {
            batch.push(&["vol-list", "--pool", pool]);
        }
        Ok(self
            .run_batch(&batch)?
            .into_iter()
            .flatten()
            .flat_map(|listing| volumes::parse_vol_list_paths(&listing))
            .collect())
    }

    /// Runs `command --domain NAME` for every name in one batch; a domain's
    /// output is `None` where the command failed for it.
    fn per_domain(
        &self,
        names: &[&str],
        command: &[&str],
    ) -> Result<Vec<Option<String>>, VirshError> {
        Ok(self
            .per_domain_each(names, &[command])?
            .into_iter()
            .map(|mut outputs| outputs.remove(0))
            .collect())
    }

    /// Runs each of `commands` with `--domain NAME` for every name;
    /// `result[n][c]` is command `c`'s output for name `n`, `None` where it
    /// failed.
    pub fn per_domain_each(
        &self,
        names: &[&str],
        commands: &[&[&str]],
    ) -> Result<Vec<Vec<Option<String>>>, VirshError> {
        let calls: Vec<(&str, &[&str])> = names
            .iter()
            .flat_map(|name| commands.iter().map(move |command| (*name, *command)))
            .collect();
        let mut sections = self.on_domains(&calls)?.into_iter();
        Ok(names
            .iter()
            .map(|_| sections.by_ref().take(commands.len()).collect())
            .collect())
    }

    /// Runs each `(name, command)` as `command --domain NAME`; an output is
    /// `None` where its command failed; a long list spread over the
    /// sessions.
    pub fn on_domains(&self, calls: &[(&str, &[&str])]) -> Result<Vec<Option<String>>, VirshError> {
        let sections = self.side_by_side(calls, self.config.sessions, |chunk| {
            let mut batch = Batch::new();
            for (name, command) in chunk {
                let mut words = command.to_vec();
                words.extend(["--domain", name]);
                batch.push(&words);
            }
            self.run_batch(&batch)
        })?;
        Ok(sections
            .into_iter()
            .map(|section| section.filter(|text| !text.trim().is_empty()))
            .collect())
    }

    /// The XML of each read (`dumpxml`, with `--inactive` where asked),
    /// `None` where it failed (the domain went away). No marker between
    /// the outputs: each is an XML document holding its domain's name.
    /// Side by side only on a local libvirtd, and on no more parts than
    /// this machine has cores (which run libvirtd too): elsewhere a second
    /// part costs a second session (over ssh, a handshake) for one read
    /// (BENCHMARKS.md).
    pub fn domain_xmls(&self, reads: &[XmlRead]) -> Result<Vec<Option<String>>, VirshError> {
        let parts = if session::connects_cheaply(self.config.connect.as_deref()) {
            let cores = thread::available_parallelism().map_or(1, usize::from);
            self.config.sessions.min(cores)
        } else {
            1
        };
        self.side_by_side(reads, parts, |reads| {
            let mut batch = Batch::self_delimiting();
            for read in reads {
                let mut words = vec!["dumpxml"];
                if read.inactive {
                    words.push("--inactive");
                }
                words.extend(["--domain", read.target]);
                batch.push(&words);
            }
            let stdout: String = self.run_batch(&batch)?.into_iter().flatten().collect();
            let documents =
                documents::split_documents(&stdout).map_err(|what| VirshError::Unusable {
                    command: self.invocation(&["dumpxml"]).summary(),
                    what,
                })?;
            let names: Vec<&str> = reads.iter().map(|read| read.name).collect();
            Ok(documents::align(&names, &documents)
                .into_iter()
                .map(|text| text.map(str::to_owned))
                .collect())
        })
    }

    /// Runs `job` on `items`, a long list cut into at most `parts` parts,
    /// side by side: libvirtd answers them in parallel. Results in the
    /// items' order.
    fn side_by_side<T: Sync, R: Send>(
        &self,
        items: &[T],
        parts: usize,
        job: impl Fn(&[T]) -> Result<Vec<R>, VirshError> + Sync,
    ) -> Result<Vec<R>, VirshError> {
        let parts = items
            .len()
            .div_ceil(COMMANDS_PER_SESSION)
            .clamp(1, parts.max(1));
        let chunks: Vec<_> = items.chunks(items.len().div_ceil(parts).max(1)).collect();
        let results: Vec<Result<Vec<R>, VirshError>> = thread::scope(|scope| {
            let jobs: Vec<_> = chunks
                .iter()
                .map(|chunk| scope.spawn(|| job(chunk)))
                .collect();
            jobs.into_iter()
                .map(|job| {
                    job.join()
                        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
                })
                .collect()
        });
        let mut all = Vec::with_capacity(items.len());
        for result in results {
            all.extend(result?);
        }
        Ok(all)
    }
}

/// One domain XML to read: `dumpxml --domain TARGET`, of the config with
/// `inactive`; the domain's `name` tells its document apart.
#[derive(Debug, Clone, Copy)]
pub struct XmlRead<'a> {
    pub target: &'a str,
    pub name: &'a str,
    pub inactive: bool,
}

/// Who a listing is for, which decides what it reads besides every
/// domain's name, state and persistence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListingFor {
    /// The scan: every metric group, and the UUIDs (a row's key, and how a
    /// name with a control character is named).
    Scan,
    /// Media: nothing more. Each metric group is more for libvirtd to
    /// gather and virsh to print for every domain, and `list --uuid` more
    /// still (1005 QEMU domains: 40 ms for the state, 70 ms with the
    /// UUIDs).
    Media,
}

/// The listing's `domstats`, no domain named.
pub(crate) fn domstats_words(purpose: ListingFor) -> Vec<&'static str> {
    let mut words = vec!["domstats", "--raw", "--state"];
    if purpose == ListingFor::Scan {
        words.extend(METRIC_GROUPS);
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::fake_virsh_on as virsh_on;
    use crate::virsh::fake::FakeRunner;

    /// Text with no `Domain:` block used to read as a host without domains.
    #[test]
    fn a_listing_without_a_domain_block_is_unusable() {
        let fake = Arc::new(FakeRunner::default());
        let expect_listing = |domstats: &str| {
            fake.expect(&domstats_words(ListingFor::Scan), 0, domstats, "");
            fake.expect(&["list", "--all", "--uuid", "--name"], 0, "", "");
            fake.expect(&["list", "--transient", "--name"], 0, "", "");
            fake.expect(&["uri"], 0, "qemu:///fake\n", "");
        };
        expect_listing("<html>a proxy's error page</html>\n");
        let error = virsh_on("qemu:///fake", &fake)
            .list_all(ListingFor::Scan)
            .unwrap_err();
        assert!(matches!(error, VirshError::Unusable { .. }), "{error}");
        assert!(error.to_string().contains("no `Domain:` block"), "{error}");
        expect_listing("");
        let empty = virsh_on("qemu:///fake", &fake)
            .list_all(ListingFor::Scan)
            .unwrap();
        assert!(empty.stats.is_empty(), "a host without domains is fine");
    }

    #[test]
    fn a_timeout_over_ssh_explains_the_likely_prompt() {
        let fake = Arc::new(FakeRunner::default());
        for uri in ["qemu+ssh://root@kvm/system", "qemu+libssh2://kvm/system"] {
            fake.expect_hang(&["version"]);
            let error = virsh_on(uri, &fake).run(&["version"]).unwrap_err();
            assert!(
                matches!(error, VirshError::SshTimeout { .. }),
                "{uri}: {error}"
            );
            assert!(error.to_string().contains("no_tty=1"), "{error}");
        }
        fake.expect_hang(&["version"]);
        let error = virsh_on("qemu:///system", &fake)
            .run(&["version"])
            .unwrap_err();
        assert!(matches!(error, VirshError::Timeout { .. }), "{error}");
    }
}
