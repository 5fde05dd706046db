//! In-process benchmarks of the pure parsers on the real fixtures
//! (`fixtures/virsh/`, captured from the lab and the test driver): what
//! parsing costs per call, apart from virsh's own time, which
//! `benches/run` measures. `nice -n 15 cargo bench --bench parsers`.

use dismount_iso_qemu::parsers;
use dismount_iso_qemu::virsh::domxml::parse_domain_xml;
use divan::black_box;

fn main() {
    divan::main();
}

/// A fixture's text by its file name under `fixtures/virsh/`, read once
/// outside the timing.
fn fixture(name: &str) -> String {
    let path = format!("{}/fixtures/virsh/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{path}: {error}"))
}

#[divan::bench(args = [
    "domstats-qemu.txt",
    "domstats-qemu-all-groups.txt",
    "domstats-qemu-held-by-a-job.txt",
    "domstats-test-driver.txt",
])]
fn domstats(bencher: divan::Bencher, name: &str) {
    let text = fixture(name);
    bencher.bench(|| parsers::parse_domstats(black_box(&text)));
}

#[divan::bench(args = [
    "dumpxml-lab-agent-live.xml",
    "dumpxml-lab-agent-inactive.xml",
    "dumpxml-lab-meta-live.xml",
    "dumpxml-lab-off-sata-attached.xml",
    "dumpxml-test-two-drives.xml",
    "dumpxml-test-pool-volume.xml",
])]
fn domain_xml(bencher: divan::Bencher, name: &str) {
    let text = fixture(name);
    bencher.bench(|| parse_domain_xml(black_box(&text)));
}

#[divan::bench]
fn list_uuid_name(bencher: divan::Bencher) {
    let text = fixture("list-uuid-name-test-driver.txt");
    bencher.bench(|| parsers::parse_uuid_names(black_box(&text)));
}

#[divan::bench(args = ["dominfo-running.txt", "dominfo-qemu-shutoff.txt"])]
fn dominfo(bencher: divan::Bencher, name: &str) {
    let text = fixture(name);
    bencher.bench(|| parsers::parse_dominfo(black_box(&text)));
}

#[divan::bench]
fn guestinfo_os(bencher: divan::Bencher) {
    let text = fixture("guestinfo-os-lab.txt");
    bencher.bench(|| parsers::parse_guestinfo(black_box(&text)));
}

#[divan::bench]
fn vol_list(bencher: divan::Bencher) {
    let text = fixture("vol-list-lab-isos.txt");
    bencher.bench(|| parsers::parse_vol_list_paths(black_box(&text)));
}

#[divan::bench(args = ["vol-dumpxml-lab-iso.xml", "vol-dumpxml-test-raw.xml"])]
fn vol_dumpxml(bencher: divan::Bencher, name: &str) {
    let text = fixture(name);
    bencher.bench(|| parsers::parse_volume_xml(black_box(&text)));
}

#[divan::bench]
fn pool_info(bencher: divan::Bencher) {
    let text = fixture("pool-info-lab-isos.txt");
    bencher.bench(|| parsers::parse_pool_info(black_box(&text)));
}

/// The agent's `guest-file-read` reply (base64 in JSON), then the
/// os-release's PRETTY_NAME: the OS of a guest that refuses
/// guest-get-osinfo.
#[divan::bench]
fn agent_os_release(bencher: divan::Bencher) {
    let reply = fixture("agent-file-read-os-release.json");
    bencher.bench(|| {
        let text = parsers::parse_file_read(black_box(&reply)).expect("the fixture is a reply");
        parsers::pretty_name_from_os_release(&text)
    });
}
