//! Storage pools and volumes over one connection: the ISO library's
//! listing in three processes whatever the number of volumes, and the
//! calls an upload or a deletion makes.

use std::sync::Arc;

use super::batch::Batch;
use super::client::{Virsh, succeeded};
use super::error::{VirshError, is_no_such_volume};
use super::process::ProcessRunner;
use super::runner::Watch;
use super::volumes::{self, Pool, PoolInfo};

/// One volume of an active storage pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Volume {
    pub pool: String,
    pub name: String,
    pub path: String,
    /// Bytes, where `vol-dumpxml` gave them.
    pub capacity: Option<u64>,
    /// `iso`, `raw`, …: libvirt's guess from the content.
    pub format: Option<String>,
}

/// The pools' UUIDs by state, as `pool-list` gave them.
#[derive(Debug, Default)]
struct PoolUuids {
    active: Vec<String>,
    inactive: Vec<String>,
}

impl Volume {
    /// An ISO by content (libvirt found the ISO 9660 signature) or by name.
    pub fn is_iso(&self) -> bool {
        self.format.as_deref() == Some("iso") || self.name.to_ascii_lowercase().ends_with(".iso")
    }
}

impl Virsh {
    /// The active storage pools' names, exactly: by UUID, then one batch
    /// of `pool-name`, as `pool-list --name` pads a name to 20 columns and
    /// a blank that ends one could not be told from the padding. None on
    /// a driver without storage.
    pub fn active_pools(&self) -> Result<Vec<String>, VirshError> {
        let uuids = self.active_pool_uuids()?;
        if uuids.is_empty() {
            return Ok(Vec::new());
        }
        let mut names = Batch::new();
        for uuid in &uuids {
            names.push(&["pool-name", "--pool", uuid]);
        }
        Ok(self
            .run_batch(&names)?
            .into_iter()
            // A pool gone since `pool-list` is left out.
            .filter_map(|name| Some(name?.lines().next()?.to_owned()))
            .collect())
    }

    /// Every storage pool, active or not, with its room: the UUIDs of
    /// both kinds in one batch, then one of `pool-dumpxml` (by UUID: see
    /// [`Virsh::active_pools`]). None on a driver without storage; a
    /// pool gone between the two is left out.
    pub fn pools(&self) -> Result<Vec<Pool>, VirshError> {
        let uuids = self.pool_uuids()?;
        let mut xmls = Batch::new();
        for uuid in uuids.active.iter().chain(&uuids.inactive) {
            xmls.push(&["pool-dumpxml", "--pool", uuid]);
        }
        if xmls.command_count() == 0 {
            return Ok(Vec::new());
        }
        let active = std::iter::repeat_n(true, uuids.active.len()).chain(std::iter::repeat(false));
        Ok(active
            .zip(self.run_batch(&xmls)?)
            .filter_map(|(active, xml)| volumes::parse_pool_xml(&xml?, active))
            .collect())
    }

    /// The UUIDs of the active pools and of the others, in one batch of
    /// two `pool-list`s; none on a driver without storage.
    fn pool_uuids(&self) -> Result<PoolUuids, VirshError> {
        let mut listing = Batch::new();
        listing.push(&["pool-list", "--uuid"]);
        listing.push(&["pool-list", "--inactive", "--uuid"]);
        let lists = match self.run_batch(&listing) {
            Err(error) if is_no_such_volume(&error) => return Ok(PoolUuids::default()),
            lists => lists?,
        };
        let uuids = |list: Option<&Option<String>>| -> Vec<String> {
            list.into_iter()
                .flatten()
                .flat_map(|text| text.lines())
                .map(str::trim)
                .filter(|uuid| !uuid.is_empty())
                .map(str::to_owned)
                .collect()
        };
        Ok(PoolUuids {
            active: uuids(lists.first()),
            inactive: uuids(lists.get(1)),
        })
    }

    /// The active storage pools' UUIDs (a UUID holds no blank, so the
    /// padding can go); none on a driver without storage.
    pub fn active_pool_uuids(&self) -> Result<Vec<String>, VirshError> {
        match self.run(&["pool-list", "--uuid"]) {
            Err(error) if is_no_such_volume(&error) => Ok(Vec::new()),
            listing => Ok(listing?
                .stdout
                .lines()
                .map(str::trim)
                .filter(|uuid| !uuid.is_empty())
                .map(str::to_owned)
                .collect()),
        }
    }

    /// Every volume with a path in every active pool: the pools' UUIDs,
    /// one batch of `pool-name` and `vol-list` (one each per pool), one
    /// batch of `vol-dumpxml` (one per volume, by path). None on a driver
    /// without storage. The pools go by UUID because `pool-list --name`
    /// pads a name to 20 columns, so a blank that ends one cannot be told
    /// from the padding; `pool-name` prints the name as it is.
    pub fn volumes(&self) -> Result<Vec<Volume>, VirshError> {
        let uuids = self.active_pool_uuids()?;
        let mut listing = Batch::new();
        for uuid in &uuids {
            listing.push(&["pool-name", "--pool", uuid]);
            listing.push(&["vol-list", "--pool", uuid]);
        }
        let sections = if uuids.is_empty() {
            Vec::new()
        } else {
            self.run_batch(&listing)?
        };
        let listed = sections
            .chunks(2)
            .filter_map(|pool| match pool {
                // A pool gone since `pool-list` is left out.
                [Some(name), Some(volumes)] => Some((name.lines().next()?.to_owned(), volumes)),
                _ => None,
            })
            .collect::<Vec<_>>();
        self.volume_details(&listed)
    }

    /// Every pool, active or not, with its directory, and every volume of
    /// the active ones (see [`Self::volumes`]): what `serve`'s pool series
    /// and a migration's destination are read from. One batch of two
    /// `pool-list`s, one of `pool-dumpxml` (the name as it is, and the
    /// directory) and `vol-list`, one of `vol-dumpxml`.
    pub fn storage(&self) -> Result<(Vec<Pool>, Vec<Volume>), VirshError> {
        let PoolUuids { active, inactive } = self.pool_uuids()?;
        let mut listing = Batch::new();
        for uuid in &active {
            listing.push(&["pool-dumpxml", "--pool", uuid]);
            listing.push(&["vol-list", "--pool", uuid]);
        }
        for uuid in &inactive {
            listing.push(&["pool-dumpxml", "--pool", uuid]);
        }
        let sections = if listing.command_count() == 0 {
            Vec::new()
        } else {
            self.run_batch(&listing)?
        };
        let (active_sections, inactive_sections) = sections.split_at(active.len() * 2);
        let mut pools = Vec::new();
        let mut listed = Vec::new();
        for pair in active_sections.chunks(2) {
            // A pool gone since `pool-list` is left out.
            let [Some(xml), volumes] = pair else { continue };
            let Some(pool) = volumes::parse_pool_xml(xml, true) else {
                continue;
            };
            if let Some(volumes) = volumes {
                listed.push((pool.name.clone(), volumes));
            }
            pools.push(pool);
        }
        pools.extend(
            inactive_sections
                .iter()
                .flatten()
                .filter_map(|xml| volumes::parse_pool_xml(xml, false)),
        );
        Ok((pools, self.volume_details(&listed)?))
    }

    /// The volumes of `vol-list` outputs, each with its pool's name, read
    /// in one batch of `vol-dumpxml` (one per volume, by path).
    fn volume_details(&self, listed: &[(String, &String)]) -> Result<Vec<Volume>, VirshError> {
        let listed: Vec<(&String, String)> = listed
            .iter()
            .flat_map(|(pool, volumes)| {
                volumes::parse_vol_list_paths(volumes)
                    .into_iter()
                    .map(move |path| (pool, path))
            })
            .collect();
        if listed.is_empty() {
            return Ok(Vec::new());
        }
        let mut details = Batch::new();
        for (_, path) in &listed {
            details.push(&["vol-dumpxml", "--vol", path]);
        }
        Ok(listed
            .iter()
            .zip(self.run_batch(&details)?)
            .filter_map(|((pool, _), xml)| {
                // A volume deleted between the two batches is left out.
                let xml = volumes::parse_volume_xml(&xml?)?;
                Some(Volume {
                    pool: (*pool).clone(),
                    name: xml.name,
                    path: xml.path,
                    capacity: xml.capacity,
                    format: xml.format,
                })
            })
            .collect())
    }

    /// A pool's state and free bytes; `None` where the connection has no
    /// pool of that name.
    pub fn pool_info(&self, pool: &str) -> Result<Option<PoolInfo>, VirshError> {
        let words = ["pool-info", "--bytes", "--pool", pool];
        match self.run(&words) {
            Ok(output) => volumes::parse_pool_info(&output.stdout)
                .map(Some)
                .ok_or_else(|| VirshError::Unusable {
                    command: self.invocation(&words).summary(),
                    what: "no `State:` line".to_owned(),
                }),
            Err(error) if is_no_such_volume(&error) => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// A volume's capacity in bytes; `None` where the pool has no volume
    /// of that name.
    pub fn volume_capacity(&self, pool: &str, name: &str) -> Result<Option<u64>, VirshError> {
        let words = ["vol-info", "--bytes", "--pool", pool, "--vol", name];
        match self.run(&words) {
            Ok(output) => volumes::parse_vol_info_capacity(&output.stdout)
                .map(Some)
                .ok_or_else(|| VirshError::Unusable {
                    command: self.invocation(&words).summary(),
                    what: "no `Capacity: N bytes` line".to_owned(),
                }),
            Err(error) if is_no_such_volume(&error) => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// The same connection with a process per call, none shared: what an
    /// upload's clean-up runs on after a signal killed every session.
    pub fn one_process_per_call(&self) -> Virsh {
        Virsh::new(self.config.clone(), Arc::new(ProcessRunner::default()))
    }

    /// `vol-upload` of the local file `from` (a FIFO the caller feeds)
    /// into the volume, on the connection's own session: an upload's
    /// checks and its bytes share one connection. No deadline as a
    /// whole: `watch` ends it.
    pub fn upload_volume(
        &self,
        pool: &str,
        name: &str,
        from: &str,
        watch: &Watch,
    ) -> Result<(), VirshError> {
        self.transfer(&["vol-upload", "--pool", pool, "--vol", name, from], watch)
    }

    /// `vol-download` into the local file `into`, as [`Self::upload_volume`].
    pub fn download_volume(
        &self,
        pool: &str,
        name: &str,
        into: &str,
        watch: &Watch,
    ) -> Result<(), VirshError> {
        self.transfer(
            &["vol-download", "--pool", pool, "--vol", name, into],
            watch,
        )
    }

    /// A transfer's one command; a non-zero exit is `VirshError::Failed`.
    fn transfer(&self, words: &[&str], watch: &Watch) -> Result<(), VirshError> {
        let invocation = self.invocation(words);
        let output = self.runner().transfer(&invocation, watch)?;
        succeeded(&invocation, output).map(drop)
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::fake_virsh;
    use crate::virsh::fake::FakeRunner;
    use std::sync::Arc;

    /// A driver without storage has no volumes, rather than failing the
    /// library of the host.
    #[test]
    fn a_driver_without_storage_has_no_volumes() {
        let fake = Arc::new(FakeRunner::default());
        fake.expect(
            &["pool-list", "--uuid"],
            1,
            "",
            "error: this function is not supported by the connection driver: virConnectListStoragePools\n",
        );
        assert_eq!(fake_virsh(&fake).volumes().unwrap(), []);
        fake.expect(
            &["pool-list", "--uuid"],
            1,
            "",
            "error: failed to connect to the hypervisor\n",
        );
        assert!(
            fake_virsh(&fake).volumes().is_err(),
            "a lost connection is no empty host"
        );
    }
}
