//! The typed client of one connection (`Virsh`): its calls, each through
//! the `Runner` seam, many domains in one batch, split over the sessions
//! and retried a call at a time where a batch overran its deadline.

use std::collections::HashMap;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use super::batch::Batch;
use super::error::{VirshError, is_no_such_volume};
use super::fanout::{self, Call, Outcome, Sections};
use super::invocation::Invocation;
use super::listing::Listing;
use super::parse::{self, DomInfo};
use super::runner::{Output, Runner};
use super::uri::Uri;
use super::{documents, session, stats, volumes};

/// Domains' XML by target, each as its read came out.
pub(crate) type Xmls = HashMap<String, XmlOutcome>;

/// How a domain's XML read came out.
#[derive(Debug, Clone)]
pub(crate) enum XmlOutcome {
    Read(String),
    /// `dumpxml` failed for the domain (it vanished, say).
    Refused,
    /// No answer came for it (past its deadline, a batch that failed).
    Unanswered(VirshError),
}

impl From<Outcome> for XmlOutcome {
    fn from(outcome: Outcome) -> Self {
        match outcome {
            Ok(Some(xml)) => XmlOutcome::Read(xml),
            Ok(None) => XmlOutcome::Refused,
            Err(error) => XmlOutcome::Unanswered(error),
        }
    }
}

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
    pub(super) config: VirshConfig,
    runner: Arc<dyn Runner>,
}

/// The `domstats` groups the metrics come from; a driver without some of
/// them (the test driver has only `state`) simply leaves their keys out.
const METRIC_GROUPS: [&str; 3] = ["--cpu-total", "--balloon", "--vcpu"];

/// What `serve` adds to the listing's `domstats` for the disk and network
/// figures (`status` shows none, so never asks), and `--nowait`: a domain
/// held by a job (a migration, a backup) reports what it has at once
/// instead of stalling the whole listing until the job lets go.
const IO_GROUPS: [&str; 3] = ["--block", "--interface", "--nowait"];

impl Virsh {
    pub fn new(config: VirshConfig, runner: Arc<dyn Runner>) -> Self {
        Virsh { config, runner }
    }

    pub fn config(&self) -> &VirshConfig {
        &self.config
    }

    pub fn runner(&self) -> &dyn Runner {
        self.runner.as_ref()
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
        succeeded(&invocation, output)
    }

    /// Runs a batch (one call per `MAX_SCRIPT_BYTES` of script) and
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
        self.list_all_with(purpose, &[])
    }

    /// [`Virsh::list_all`] with more `domstats` words (groups, flags).
    pub fn list_all_with(&self, purpose: ListingFor, more: &[&str]) -> Result<Listing, VirshError> {
        let mut words = domstats_words(purpose);
        words.extend(more);
        let scan = purpose == ListingFor::Scan;
        let mut batch = Batch::new();
        batch.push(&words);
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
                command: self.invocation(&words).summary(),
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

    /// The scan's listing with `serve`'s disk and network figures
    /// (`IO_GROUPS`), each domain that `--nowait` found held by another
    /// client's job (a second exporter's `domstats`, a `status` run) asked
    /// once more: such a collision lasts milliseconds, and a counter
    /// missing from one scan leaves a gap in every `rate()` over it. Held
    /// again, or gone meanwhile, a domain keeps what the listing gave.
    pub fn list_all_with_io(&self) -> Result<Listing, VirshError> {
        let mut listing = self.list_all_with(ListingFor::Scan, &IO_GROUPS)?;
        let held: Vec<String> = listing
            .stats
            .iter()
            .filter(|domain| stats::held_by_a_job(domain))
            .map(|domain| domain.name.clone())
            .collect();
        if held.is_empty() {
            return Ok(listing);
        }
        let mut words = domstats_words(ListingFor::Scan);
        words.extend(IO_GROUPS);
        // The names are data: one starting with `-` is still a name.
        words.push("--");
        words.extend(held.iter().map(String::as_str));
        let Ok(again) = self.run(&words) else {
            return Ok(listing);
        };
        for domain in parse::parse_domstats(&again.stdout) {
            if stats::held_by_a_job(&domain) {
                continue;
            }
            if let Some(first) = listing
                .stats
                .iter_mut()
                .find(|first| first.name == domain.name)
            {
                *first = domain;
            }
        }
        Ok(listing)
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
    /// test driver's have state only), batched, a long list over the
    /// sessions side by side; each name's own outcome.
    pub fn dominfo_many(&self, names: &[&str]) -> Vec<Result<Option<DomInfo>, VirshError>> {
        self.per_domain(names, &["dominfo"])
            .into_iter()
            .map(|section| Ok(section?.map(|text| parse::parse_dominfo(&text))))
            .collect()
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

    /// The other name a storage volume goes by in domain XML: for
    /// `POOL/VOLUME` its path, for a path `POOL/VOLUME`. `None` where no
    /// pool holds it, or the connection has no storage driver. Each
    /// answer is its first line exactly: a name or path may end in a
    /// blank (`trail.iso ` next to `trail.iso`).
    pub fn volume_alias(&self, name: &str) -> Result<Option<String>, VirshError> {
        let lookup = |args: &[&str]| match self.run(args) {
            // Only the line ends virsh adds go: a name or path may end
            // (or start) in a blank, and is another volume without it.
            Ok(output) => Ok(Some(output.stdout.trim_end_matches('\n').to_owned())),
            Err(error) if is_no_such_volume(&error) => Ok(None),
            Err(error) => Err(error),
        };
        if name.starts_with('/') {
            let Some(pool) = lookup(&["vol-pool", "--vol", name])? else {
                return Ok(None);
            };
            let volume = lookup(&["vol-name", "--vol", name])?;
            return Ok(volume.map(|volume| format!("{pool}/{volume}")));
        }
        match name.split_once('/') {
            Some((pool, volume)) if !pool.is_empty() && !volume.is_empty() => {
                lookup(&["vol-path", "--pool", pool, "--vol", volume])
            }
            _ => Ok(None),
        }
    }

    /// The paths of every volume in every active storage pool, in two
    /// processes whatever the number of pools; the pools go by UUID, as
    /// a name may end in a blank `pool-list --name` pads away.
    pub fn volume_paths(&self) -> Result<Vec<String>, VirshError> {
        let mut batch = Batch::new();
        for pool in self.active_pool_uuids()? {
            batch.push(&["vol-list", "--pool", &pool]);
        }
        Ok(self
            .run_batch(&batch)?
            .into_iter()
            .flatten()
            .flat_map(|listing| volumes::parse_vol_list_paths(&listing))
            .collect())
    }

    /// Runs `command --domain NAME` for every name, in one batch per
    /// session (from [`fanout::COMMANDS_PER_SESSION`] calls on), each
    /// name's own outcome (see [`Virsh::on_each_domain`]).
    fn per_domain(&self, names: &[&str], command: &[&str]) -> Vec<Outcome> {
        let calls: Vec<Call> = names.iter().map(|name| (*name, command)).collect();
        self.on_each_domain(&calls)
    }

    /// Runs each of `commands` with `--domain NAME` for every name;
    /// `result[n][c]` is command `c`'s output for name `n`, `None` where it
    /// failed; any call without an answer fails them all (a change must
    /// not be planned on part of a domain).
    pub fn per_domain_each(
        &self,
        names: &[&str],
        commands: &[&[&str]],
    ) -> Result<Vec<Vec<Option<String>>>, VirshError> {
        let calls: Vec<Call> = names
            .iter()
            .flat_map(|name| commands.iter().map(move |command| (*name, *command)))
            .collect();
        let sections: Result<Vec<_>, _> = self.on_each_domain(&calls).into_iter().collect();
        let mut sections = sections?.into_iter();
        Ok(names
            .iter()
            .map(|_| sections.by_ref().take(commands.len()).collect())
            .collect())
    }

    /// Runs each `(name, command)` as `command --domain NAME`, each call
    /// with its own outcome: `Ok(None)` where its command failed for the
    /// domain, `Err` where no answer came for it. A long list is cut into
    /// one batch per session (at least `fanout::COMMANDS_PER_SESSION`
    /// calls each), run side by side: libvirtd answers them in parallel.
    /// A batch past its deadline that names several domains is run again
    /// a call at a time (`fanout::isolate`): a hung domain costs its
    /// own calls, not the others'.
    pub fn on_each_domain(&self, calls: &[Call]) -> Vec<Outcome> {
        let results =
            fanout::side_by_side(calls, self.config.sessions, |chunk| self.run_calls(chunk));
        fanout::isolate(calls, results, &self.alone())
    }

    /// The XML of each read (`dumpxml`, with `--inactive` where asked),
    /// each with its own outcome as [`Virsh::on_each_domain`] gives it. No
    /// marker between the outputs: each is an XML document holding its
    /// domain's name. Side by side only on a local libvirtd, and on no more
    /// parts than this machine has cores (which run libvirtd too):
    /// elsewhere a second part costs a second session (over ssh, a
    /// handshake) for one read (BENCHMARKS.md). A part past its deadline
    /// that names several domains is read again a call at a time, as
    /// [`Virsh::on_each_domain`] does.
    pub fn domain_xmls(&self, reads: &[XmlRead]) -> Vec<Outcome> {
        let parts = if session::connects_cheaply(self.config.connect.as_deref()) {
            let cores = thread::available_parallelism().map_or(1, usize::from);
            self.config.sessions.min(cores)
        } else {
            1
        };
        let results = fanout::side_by_side(reads, parts, |reads| self.read_xmls(reads));
        let calls: Vec<Call> = reads
            .iter()
            .map(|read| (read.target, read.command()))
            .collect();
        fanout::isolate(&calls, results, &self.alone())
    }

    /// The reads in one self-delimiting batch, each document matched to
    /// its read by the domain name it holds; `None` where a read printed
    /// none (it failed).
    fn read_xmls(&self, reads: &[XmlRead]) -> Sections {
        let mut batch = Batch::self_delimiting();
        for read in reads {
            let mut words = read.command().to_vec();
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
    }

    /// How [`fanout::isolate`] runs the calls of a part past its deadline
    /// again: on this connection's sessions, under its `--timeout`.
    fn alone(&self) -> fanout::Alone<impl Fn(&[Call]) -> Sections + Sync> {
        fanout::Alone {
            sessions: self.config.sessions,
            timeout: self.config.timeout,
            run: |calls: &[Call]| self.run_calls(calls),
        }
    }

    /// The calls in one batch; an output is `None` where its command
    /// failed (or printed nothing).
    fn run_calls(&self, calls: &[Call]) -> Sections {
        let mut batch = Batch::new();
        for (name, command) in calls {
            let mut words = command.to_vec();
            words.extend(["--domain", name]);
            batch.push(&words);
        }
        Ok(self
            .run_batch(&batch)?
            .into_iter()
            .map(|section| section.filter(|text| !text.trim().is_empty()))
            .collect())
    }
}

/// What one command of `invocation` printed, a non-zero exit as
/// `VirshError::Failed` with virsh's own words.
pub(super) fn succeeded(invocation: &Invocation, output: Output) -> Result<Output, VirshError> {
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

/// One domain XML to read: `dumpxml --domain TARGET`, of the config with
/// `inactive`; the domain's `name` tells its document apart.
#[derive(Debug, Clone, Copy)]
pub struct XmlRead<'a> {
    pub target: &'a str,
    pub name: &'a str,
    pub inactive: bool,
}

impl XmlRead<'_> {
    /// The read's command, without its `--domain`.
    fn command(&self) -> &'static [&'static str] {
        if self.inactive {
            &["dumpxml", "--inactive"]
        } else {
            &["dumpxml"]
        }
    }
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

    /// lab-agent came held by another client's job (the captured
    /// listing): it is asked once more, alone, and its figures from then
    /// replace the first answer's; lab-off, shut off, is not asked again.
    #[test]
    fn a_domain_a_job_held_from_the_listing_is_asked_once_more() {
        let fake = Arc::new(FakeRunner::default());
        let mut listing = domstats_words(ListingFor::Scan);
        listing.extend(IO_GROUPS);
        let held = crate::testing::fixture("virsh/domstats-qemu-held-by-a-job.txt");
        fake.expect(&listing, 0, &held, "");
        fake.expect(&["list", "--all", "--uuid", "--name"], 0, "", "");
        fake.expect(&["list", "--transient", "--name"], 0, "", "");
        fake.expect(&["uri"], 0, "qemu:///fake\n", "");
        let free = crate::testing::fixture("virsh/domstats-qemu-all-groups.txt");
        let lab_agent = free
            .split("\n\n")
            .find(|block| block.starts_with("Domain: 'lab-agent'"))
            .unwrap();
        let mut again = listing.clone();
        again.extend(["--", "lab-agent"]);
        fake.expect(&again, 0, lab_agent, "");
        let listed = virsh_on("qemu:///fake", &fake).list_all_with_io().unwrap();
        fake.assert_all_used();
        let of = |name: &str| {
            listed
                .stats
                .iter()
                .find(|stats| stats.name == name)
                .unwrap()
        };
        assert_eq!(of("lab-agent").get_u64("block.0.rd.bytes"), Some(2048));
        assert_eq!(of("lab-off").get_u64("block.0.capacity"), Some(378880));
        assert_eq!(listed.stats.len(), 2);
    }

    fn xml(name: &str) -> String {
        format!("<domain><name>{name}</name></domain>\n")
    }

    /// One domain's read hangs in a batch of three: the batch is run again
    /// a call at a time, and only that domain's read is lost.
    #[test]
    fn a_hung_domain_in_a_batch_costs_only_its_own_read() {
        let fake = Arc::new(FakeRunner::default());
        // The batch: `a` answers, `b` hangs (`c` is never reached).
        fake.expect(&["dumpxml", "--domain", "a"], 0, &xml("a"), "");
        fake.expect_hang(&["dumpxml", "--domain", "b"]);
        // Then each alone.
        fake.expect(&["dumpxml", "--domain", "a"], 0, &xml("a"), "");
        fake.expect_hang(&["dumpxml", "--domain", "b"]);
        fake.expect(&["dumpxml", "--domain", "c"], 0, &xml("c"), "");
        let virsh = virsh_on("test:///fake", &fake);
        let outcomes = virsh.per_domain(&["a", "b", "c"], &["dumpxml"]);
        fake.assert_all_used();
        assert_eq!(outcomes[0].as_ref().unwrap().as_deref(), Some(&*xml("a")));
        assert_eq!(outcomes[2].as_ref().unwrap().as_deref(), Some(&*xml("c")));
        let error = outcomes[1].as_ref().unwrap_err();
        assert!(error.is_timeout(), "{error}");
        assert!(
            error
                .to_string()
                .contains("dumpxml --domain b` did not finish"),
            "the error names the read that hung alone: {error}"
        );
        assert_eq!(fake.process_count(), 4, "the batch, then one per call");
    }

    /// Once a domain's read has hung, its other reads are not sent; a
    /// batch naming one domain is not run again (nobody else to save).
    #[test]
    fn a_domain_that_hung_is_not_asked_again_and_a_lone_domain_is_not_retried() {
        let fake = Arc::new(FakeRunner::default());
        let one_session = |fake: &Arc<FakeRunner>| {
            let mut config = virsh_on("test:///fake", fake).config().clone();
            config.sessions = 1;
            Virsh::new(config, fake.clone())
        };
        let live: &[&str] = &["dumpxml"];
        let inactive: &[&str] = &["dumpxml", "--inactive"];
        fake.expect_hang(&["dumpxml", "--domain", "b"]);
        fake.expect_hang(&["dumpxml", "--domain", "b"]);
        fake.expect(&["dumpxml", "--domain", "c"], 0, &xml("c"), "");
        let outcomes =
            one_session(&fake).on_each_domain(&[("b", live), ("b", inactive), ("c", live)]);
        fake.assert_all_used();
        assert!(outcomes[0].as_ref().is_err_and(VirshError::is_timeout));
        assert!(outcomes[1].as_ref().is_err_and(VirshError::is_timeout));
        assert_eq!(outcomes[2].as_ref().unwrap().as_deref(), Some(&*xml("c")));
        assert_eq!(
            fake.process_count(),
            3,
            "b's inactive read never sent alone"
        );

        let fake = Arc::new(FakeRunner::default());
        fake.expect_hang(&["dumpxml", "--domain", "b"]);
        let outcomes = one_session(&fake).on_each_domain(&[("b", live), ("b", inactive)]);
        assert!(
            outcomes
                .iter()
                .all(|o| o.as_ref().is_err_and(VirshError::is_timeout))
        );
        assert_eq!(fake.process_count(), 1);
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
