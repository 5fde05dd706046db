//! The numbered entries of a `domstats` block (`block.0.*`, `net.1.*`,
//! `vcpu.0.*`): one per disk, interface or vCPU, each with its fields, as
//! pure functions over a parsed block.

use std::collections::BTreeMap;

use super::parse::{DomainState, DomainStats};

/// One numbered entry of a group: `block.0.rd.bytes=2048` is entry 0 of
/// `block` with the field `rd.bytes`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry<'a> {
    pub index: u32,
    /// Field name (after `GROUP.N.`) → value.
    pub fields: BTreeMap<&'a str, &'a str>,
}

impl Entry<'_> {
    pub fn get(&self, field: &str) -> Option<&str> {
        self.fields.get(field).copied()
    }

    pub fn get_u64(&self, field: &str) -> Option<u64> {
        self.get(field)?.parse().ok()
    }
}

/// The entries of `group` (`block`, `net`, `vcpu`) in index order; the
/// group's own keys (`block.count`, `vcpu.current`) are no entry's.
pub fn entries<'a>(stats: &'a DomainStats, group: &str) -> Vec<Entry<'a>> {
    let mut entries: BTreeMap<u32, BTreeMap<&'a str, &'a str>> = BTreeMap::new();
    let prefix = format!("{group}.");
    for (key, value) in stats.fields.range(prefix.clone()..) {
        let Some(rest) = key.strip_prefix(&prefix) else {
            break;
        };
        let Some((index, field)) = rest.split_once('.') else {
            continue;
        };
        if let Ok(index) = index.parse() {
            entries
                .entry(index)
                .or_default()
                .insert(field, value.as_str());
        }
    }
    entries
        .into_iter()
        .map(|(index, fields)| Entry { index, fields })
        .collect()
}

/// Whether `--nowait` found the domain held by another client's job: it
/// is active and has disks, and not one of them has the I/O counters
/// QEMU's monitor gives every disk of a running domain. libvirt then
/// leaves out each figure that needs the monitor, and says nothing.
pub fn held_by_a_job(stats: &DomainStats) -> bool {
    let active = stats.state().is_some_and(|state| {
        !matches!(
            state,
            DomainState::ShutOff | DomainState::Crashed | DomainState::NoState
        )
    });
    let disks = entries(stats, "block");
    active && !disks.is_empty() && disks.iter().all(|disk| disk.get("rd.reqs").is_none())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::fixture;
    use crate::virsh::parse::parse_domstats;

    fn domain(name: &str) -> DomainStats {
        parse_domstats(&fixture("virsh/domstats-qemu-all-groups.txt"))
            .into_iter()
            .find(|stats| stats.name == name)
            .unwrap_or_else(|| panic!("{name} missing"))
    }

    /// Real QEMU output (the lab): a running guest's CD-ROM with its I/O,
    /// a shut-off one's with its sizes only; vCPU times; no interfaces.
    #[test]
    fn block_and_vcpu_entries_of_the_lab() {
        let running = domain("lab-agent");
        let blocks = entries(&running, "block");
        assert_eq!(blocks.len(), 1);
        let hdc = &blocks[0];
        assert_eq!((hdc.index, hdc.get("name")), (0, Some("hdc")));
        assert!(
            hdc.get("path")
                .is_some_and(|p| p.ends_with("install-a.iso"))
        );
        for field in [
            "rd.reqs",
            "rd.bytes",
            "rd.times",
            "wr.reqs",
            "wr.bytes",
            "wr.times",
            "fl.reqs",
            "fl.times",
            "capacity",
            "allocation",
            "physical",
        ] {
            assert!(hdc.get_u64(field).is_some(), "block.0.{field}");
        }
        assert_eq!(hdc.get_u64("rd.bytes"), Some(2048));
        let vcpus = entries(&running, "vcpu");
        assert_eq!(vcpus.len(), 1, "vcpu.current and vcpu.maximum are no entry");
        assert!(vcpus[0].get_u64("time").is_some() && vcpus[0].get_u64("delay").is_some());
        assert!(entries(&running, "net").is_empty(), "net.count=0");

        let off = domain("lab-off");
        let blocks = entries(&off, "block");
        assert_eq!(blocks[0].get_u64("capacity"), Some(378880));
        assert_eq!(blocks[0].get("rd.bytes"), None, "no I/O when shut off");
        assert!(entries(&off, "vcpu").is_empty());
    }

    /// The lab's guests have no network interface: the fields as libvirt
    /// documents them (`virsh help domstats`, virConnectGetAllDomainStats).
    #[test]
    fn interface_entries_in_index_order() {
        let stats = &parse_domstats(
            "Domain: 'web'\n  net.count=2\n  net.1.name=vnet1\n  net.1.rx.bytes=7\n  \
             net.0.name=vnet0\n  net.0.rx.bytes=5\n  net.0.tx.drop=1\n  net.x.junk=1\n  \
             network.0.name=not-net\n",
        )[0];
        let nets = entries(stats, "net");
        assert_eq!(nets.len(), 2);
        assert_eq!(
            (nets[0].get("name"), nets[0].get_u64("tx.drop")),
            (Some("vnet0"), Some(1))
        );
        assert_eq!((nets[1].index, nets[1].get_u64("rx.bytes")), (1, Some(7)));
    }

    /// Captured while a second client's `domstats` held lab-agent: no
    /// monitor figures for it; lab-off, shut off, never has them.
    #[test]
    fn a_running_domain_without_its_disks_counters_was_held_by_a_job() {
        let held = parse_domstats(&fixture("virsh/domstats-qemu-held-by-a-job.txt"));
        let of = |name: &str| held.iter().find(|stats| stats.name == name).unwrap();
        assert!(held_by_a_job(of("lab-agent")));
        assert!(!held_by_a_job(of("lab-off")), "shut off: no I/O to miss");
        assert!(
            !held_by_a_job(&domain("lab-agent")),
            "the figures are there"
        );
        assert!(!held_by_a_job(&domain("lab-off")));
        let test_driver = parse_domstats(&fixture("virsh/domstats-test-driver.txt"));
        assert!(
            test_driver.iter().all(|stats| !held_by_a_job(stats)),
            "the test driver lists no disks at all"
        );
    }
}
