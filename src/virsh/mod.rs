//! virsh as a typed client: one connection's worth of calls, each a single
//! process (or one batch for many domains), parsed by pure functions.

pub mod batch;
pub mod domxml;
pub mod error;
#[cfg(test)]
pub mod fake;
pub mod metadata;
pub mod parse;
pub mod runner;
pub mod volumes;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

pub use batch::Batch;
pub use domxml::{DomainXml, Drive, DriveKind, Media};
pub use error::VirshError;
pub use parse::{DomInfo, DomainState, DomainStats};
pub use runner::{Invocation, Output, ProcessRunner, Runner};

/// How to reach virsh and the hypervisor behind it.
#[derive(Debug, Clone)]
pub struct VirshConfig {
    /// The binary, looked up on PATH when it has no slash.
    pub program: String,
    /// `-c URI`; `None` lets virsh apply its own default
    /// (`LIBVIRT_DEFAULT_URI`, then its configuration).
    pub connect: Option<String>,
    /// Bounds every single virsh process.
    pub timeout: Duration,
}

#[derive(Clone)]
pub struct Virsh {
    config: VirshConfig,
    runner: Arc<dyn Runner>,
}

/// The `domstats` groups the metrics come from; a driver without some of
/// them (the test driver has only `state`) simply leaves their keys out.
const METRIC_GROUPS: [&str; 3] = ["--cpu-total", "--balloon", "--vcpu"];

/// Domains per metrics process: 500 names of up to 64 bytes stay well
/// inside one batch piece.
const METRICS_CHUNK: usize = 500;

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

    pub fn invocation<S: AsRef<str>>(&self, args: &[S]) -> Invocation {
        let mut argv = Vec::with_capacity(args.len() + 2);
        if let Some(uri) = &self.config.connect {
            argv.push("-c".to_owned());
            argv.push(uri.clone());
        }
        argv.extend(args.iter().map(|a| a.as_ref().to_owned()));
        Invocation {
            program: self.config.program.clone(),
            args: argv,
        }
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
        self.config.connect.as_deref().is_some_and(|uri| {
            uri.split_once("://")
                .is_some_and(|(scheme, _)| scheme.contains("+ssh") || scheme.contains("+libssh"))
        })
    }

    /// Runs one command; a non-zero exit becomes [`VirshError::Failed`].
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
    /// returns each command's section. Failures of single commands are
    /// expected (a domain vanished); only a process that printed no section
    /// at all is an error, with virsh's stderr as the reason.
    pub fn run_batch(&self, batch: &Batch) -> Result<Vec<Option<String>>, VirshError> {
        let mut sections = Vec::with_capacity(batch.len());
        for piece in batch.pieces() {
            let invocation = self.invocation(&[&piece.script]);
            let output = self.spawn(&invocation)?;
            let piece_sections = batch.split(piece.commands, &output.stdout);
            if piece_sections.iter().all(Option::is_none) {
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

    /// Every domain's name and state (`domstats --state`), its UUID
    /// (`list --all --uuid --name`: one `UUID NAME` per line, not the
    /// table), and the connection's own URI (`uri`), in one process.
    pub fn list_all(&self) -> Result<Listing, VirshError> {
        let mut batch = Batch::new();
        batch.push(&["domstats", "--raw", "--state"]);
        batch.push(&["list", "--all", "--uuid", "--name"]);
        batch.push(&["uri"]);
        let mut sections = self
            .run_batch(&batch)?
            .into_iter()
            .map(Option::unwrap_or_default);
        Ok(Listing {
            stats: parse::parse_domstats(&sections.next().unwrap_or_default()),
            uuids: parse::parse_uuid_names(&sections.next().unwrap_or_default()),
            uri: Some(sections.next().unwrap_or_default().trim().to_owned())
                .filter(|uri| !uri.is_empty()),
        })
    }

    /// CPU, balloon and vCPU stats of the named domains plus their
    /// `dominfo` (persistence, and what a driver's stats leave out: the
    /// test driver has no stats groups but state), in one process.
    pub fn metrics_many(
        &self,
        names: &[&str],
    ) -> Result<(Vec<DomainStats>, Vec<Option<DomInfo>>), VirshError> {
        let (mut stats, mut infos) = (Vec::new(), Vec::with_capacity(names.len()));
        // domstats takes its names as one command, and a batch piece must
        // stay under the argument limit: 500 names at a time.
        for chunk in names.chunks(METRICS_CHUNK) {
            let mut batch = Batch::new();
            let mut domstats = vec!["domstats", "--raw"];
            domstats.extend(METRIC_GROUPS);
            // `--` ends the options: a domain may be called `--help`.
            domstats.push("--");
            domstats.extend(chunk);
            batch.push(&domstats);
            push_per_domain(&mut batch, chunk, &[&["dominfo"]]);
            let mut sections = self.run_batch(&batch)?.into_iter();
            stats.extend(parse::parse_domstats(
                &sections.next().flatten().unwrap_or_default(),
            ));
            infos.extend(sections.map(|section| {
                section
                    .filter(|text| !text.trim().is_empty())
                    .map(|text| parse::parse_dominfo(&text))
            }));
        }
        Ok((stats, infos))
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

    /// Runs each of `commands` with `--domain NAME` for every name, all in
    /// one batch; `result[n][c]` is command `c`'s output for name `n`,
    /// `None` where it failed.
    pub fn per_domain_each(
        &self,
        names: &[&str],
        commands: &[&[&str]],
    ) -> Result<Vec<Vec<Option<String>>>, VirshError> {
        let mut batch = Batch::new();
        push_per_domain(&mut batch, names, commands);
        let mut sections = self
            .run_batch(&batch)?
            .into_iter()
            .map(|section| section.filter(|text| !text.trim().is_empty()));
        Ok(names
            .iter()
            .map(|_| sections.by_ref().take(commands.len()).collect())
            .collect())
    }
}

/// What one listing process learns about a connection.
#[derive(Debug, Clone, Default)]
pub struct Listing {
    pub stats: Vec<DomainStats>,
    /// Name → UUID.
    pub uuids: HashMap<String, String>,
    /// The URI virsh actually connected to (`qemu:///system`, `test:///…`,
    /// `qemu+ssh://…`): it names the driver even when `-c` was not given.
    pub uri: Option<String>,
}

impl Listing {
    /// The hypervisor driver: the URI scheme without its transport.
    pub fn driver(&self) -> Option<&str> {
        let scheme = self.uri.as_deref()?.split_once(':')?.0;
        Some(scheme.split_once('+').map_or(scheme, |(driver, _)| driver))
    }
}

/// Appends each of `commands` with `--domain NAME`, name by name.
fn push_per_domain(batch: &mut Batch, names: &[&str], commands: &[&[&str]]) {
    for name in names {
        for command in commands {
            let mut words = command.to_vec();
            words.extend(["--domain", name]);
            batch.push(&words);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::fake_virsh_on as virsh_on;
    use crate::virsh::fake::FakeRunner;

    #[test]
    fn metrics_of_a_large_fleet_come_500_domains_per_process() {
        let fake = Arc::new(FakeRunner::default());
        let names: Vec<String> = (0..1200).map(|n| format!("vm-{n:04}")).collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        for chunk in names.chunks(500) {
            let domstats = crate::testing::metrics_domstats(chunk);
            let stats: String = chunk
                .iter()
                .map(|n| format!("Domain: '{n}'\n  cpu.time=1\n\n"))
                .collect();
            fake.expect(&domstats, 0, &stats, "");
            for name in chunk {
                fake.expect(&["dominfo", "--domain", name], 0, "CPU(s):         1\n", "");
            }
        }
        let (stats, infos) = virsh_on("qemu:///fake", &fake)
            .metrics_many(&names)
            .unwrap();
        fake.assert_all_used();
        assert_eq!(fake.process_count(), 3);
        assert_eq!(stats.len(), 1200);
        assert_eq!(stats[1199].name, "vm-1199");
        assert_eq!(infos.len(), 1200);
        assert!(
            infos
                .iter()
                .all(|i| i.as_ref().is_some_and(|i| i.vcpus == Some(1)))
        );
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
