//! Planning and checking media changes on XML captured from real virsh.

use super::iso::IsoName;
use super::plan::{Reply, plan_eject};
use super::*;
use crate::testing::fixture;
use crate::virsh::domxml::parse_domain_xml;
use crate::virsh::{DomainState, DomainXml, Virsh};

fn xml(name: &str) -> DomainXml {
    parse_domain_xml(&fixture(&format!("virsh/{name}"))).unwrap()
}

fn domain(name: &str, state: DomainState, live: Option<&str>, config: Option<&str>) -> DomainMedia {
    DomainMedia {
        name: name.to_owned(),
        state,
        live: live.map(xml),
        config: config.map(xml),
    }
}

const ISO_A: &str = "/work/main/.lab/isos/install-a.iso";
const ISO_B: &str = "/work/main/.lab/isos/tools-b.iso";

fn running_agent() -> DomainMedia {
    domain(
        "lab-agent",
        DomainState::Running,
        Some("dumpxml-lab-agent-live.xml"),
        Some("dumpxml-lab-agent-inactive.xml"),
    )
}

#[test]
fn running_persistent_replace_touches_live_and_config() {
    let step = plan_mount(&running_agent(), "hdc", ISO_B, false).unwrap();
    assert_eq!(
        step.argv(),
        [
            "change-media",
            "--domain",
            "lab-agent",
            "--path",
            "hdc",
            "--source",
            ISO_B,
            "--update",
            "--live",
            "--config",
        ]
    );
    assert!(step.describe().contains("replace"), "{}", step.describe());
    assert_eq!(
        plan_mount(&running_agent(), "hdc", ISO_A, false),
        None,
        "already there"
    );
}

#[test]
fn shut_off_changes_the_config_only() {
    let off = domain(
        "lab-off",
        DomainState::ShutOff,
        None,
        Some("dumpxml-lab-off.xml"),
    );
    let step = plan_eject(&off, "hdc", None, false).unwrap();
    assert_eq!(
        step.argv(),
        [
            "change-media",
            "--domain",
            "lab-off",
            "--path",
            "hdc",
            "--eject",
            "--config"
        ]
    );
}

#[test]
fn transient_empty_drive_gets_a_live_insert() {
    let transient = domain(
        "-t",
        DomainState::Running,
        Some("dumpxml-lab-noagent-live.xml"),
        None,
    );
    let step = plan_mount(&transient, "hdc", ISO_A, true).unwrap();
    assert_eq!(
        step.argv(),
        [
            "change-media",
            "--domain",
            "-t",
            "--path",
            "hdc",
            "--source",
            ISO_A,
            "--insert",
            "--live",
            "--force",
        ]
    );
}

#[test]
fn eject_only_the_views_holding_the_asked_iso() {
    // Ejected live only: the config still brings the ISO back at boot.
    let half = domain(
        "lab-agent",
        DomainState::Running,
        Some("dumpxml-lab-noagent-ejected-live.xml"),
        Some("dumpxml-lab-agent-inactive.xml"),
    );
    let step = plan_eject(&half, "hdc", Some(&IsoName::exact(ISO_A)), false).unwrap();
    assert!(
        matches!(
            step,
            Step::Change {
                live: false,
                config: true,
                ..
            }
        ),
        "{step:?}"
    );
    assert_eq!(
        plan_eject(&half, "hdc", Some(&IsoName::exact(ISO_B)), false),
        None
    );
    let empty = domain(
        "e",
        DomainState::Running,
        Some("dumpxml-lab-noagent-live.xml"),
        None,
    );
    assert_eq!(plan_eject(&empty, "hdc", None, false), None);
}

#[test]
fn verify_reports_every_view_not_as_asked() {
    let step = plan_eject(&running_agent(), "hdc", None, false).unwrap();
    let outcome = step.verify(Some(&running_agent()), Reply::Confirmed);
    let Verdict::Failed(failure) = outcome.verdict else {
        panic!("{outcome:?}")
    };
    assert!(
        failure.contains("the live XML has '") && failure.contains("the config XML"),
        "{failure}"
    );
    let done = ejected_agent();
    assert_eq!(
        step.verify(Some(&done), Reply::Confirmed).verdict,
        Verdict::Done
    );
    assert!(
        matches!(
            step.verify(None, Reply::Confirmed).verdict,
            Verdict::Failed(_)
        ),
        "vanished domain"
    );
    let refused = step.verify(
        Some(&running_agent()),
        Reply::Refused("virsh said no".into()),
    );
    assert_eq!(refused.verdict, Verdict::Failed("virsh said no".into()));
}

/// What the XML shows decides: virsh's error (or its silence past
/// `--timeout`) over a change the XML shows made is a note on a success,
/// never a FAILED line for an ISO that is in.
#[test]
fn the_xml_decides_whatever_virsh_answered() {
    let step = plan_eject(&running_agent(), "hdc", None, false).unwrap();
    let late = step.verify(
        Some(&ejected_agent()),
        Reply::Late("`virsh change-media` did not finish within 2s".into()),
    );
    assert_eq!(late.verdict, Verdict::Done);
    assert!(
        late.note
            .as_deref()
            .is_some_and(|n| n.contains("virsh answered late")),
        "{late:?}"
    );
    let refused = step.verify(Some(&ejected_agent()), Reply::Refused("odd".into()));
    assert_eq!(refused.verdict, Verdict::Done);
    let not_done = step.verify(Some(&running_agent()), Reply::Late("late".into()));
    assert!(
        matches!(&not_done.verdict, Verdict::Failed(why) if why.contains("late") && why.contains("the live XML has")),
        "{not_done:?}"
    );
}

fn ejected_agent() -> DomainMedia {
    domain(
        "lab-agent",
        DomainState::Running,
        Some("dumpxml-lab-noagent-ejected-live.xml"),
        Some("dumpxml-lab-noagent-live.xml"),
    )
}

/// A MediaManager on a scripted remote virsh (its ISO checks are storage
/// volume look-ups, declared like any other command).
fn scripted_media(fake: &std::sync::Arc<crate::virsh::fake::FakeRunner>) -> MediaManager {
    MediaManager::new(crate::testing::fake_virsh_on("qemu+ssh://far/system", fake))
}

/// The re-read of `lab-agent` right before its change: its dominfo and
/// these live and config XMLs.
fn expect_reread(fake: &crate::virsh::fake::FakeRunner, live: &str, config: &str) {
    for (command, answer) in [
        (&["dominfo"][..], fixture("virsh/dominfo-running.txt")),
        (&["dumpxml"][..], live.to_owned()),
        (&["dumpxml", "--inactive"][..], config.to_owned()),
    ] {
        let mut words = command.to_vec();
        words.extend(["--domain", "lab-agent"]);
        fake.expect(&words, 0, &answer, "");
    }
}

/// The plan is the contract: a drive that another admin changed between
/// the plan (or its confirmation) and the change is left as it is, and
/// says what it holds now. The scripted virsh refuses the change-media
/// the tool used to send anyway.
#[test]
fn a_drive_changed_since_the_plan_is_left_alone() {
    let fake = std::sync::Arc::new(crate::virsh::fake::FakeRunner::default());
    let step = plan_eject(&running_agent(), "hdc", None, false).unwrap();
    let swapped = fixture("virsh/dumpxml-lab-agent-live.xml").replace(ISO_A, ISO_B);
    expect_reread(
        &fake,
        &swapped,
        &fixture("virsh/dumpxml-lab-agent-inactive.xml"),
    );
    let mut sent = 0;
    let outcomes = scripted_media(&fake).apply(&[step], |_| sent += 1);
    fake.assert_all_used();
    assert_eq!(sent, 0);
    let Verdict::NotRun(why) = &outcomes[0].verdict else {
        panic!("{outcomes:?}")
    };
    assert!(
        why.contains(&format!(
            "the live XML holds '{ISO_B}' now (the plan saw '{ISO_A}')"
        )),
        "{why}"
    );
}

/// A mount planned into an empty drive that has filled up since is not
/// turned into a replace; an ISO gone since the plan is refused then.
#[test]
fn a_mount_checks_the_drive_and_the_iso_again_at_the_change() {
    let empty_live = fixture("virsh/dumpxml-lab-noagent-live.xml");
    let empty = DomainMedia {
        name: "lab-agent".into(),
        state: DomainState::Running,
        live: Some(crate::virsh::domxml::parse_domain_xml(&empty_live).unwrap()),
        config: None,
    };
    let step = plan_mount(&empty, "hdc", ISO_B, false).unwrap();
    assert!(matches!(
        step,
        Step::Change {
            action: Action::Insert(_),
            ..
        }
    ));

    let fake = std::sync::Arc::new(crate::virsh::fake::FakeRunner::default());
    let filled = fixture("virsh/dumpxml-lab-agent-live.xml");
    expect_reread(&fake, &filled, "");
    let outcomes = scripted_media(&fake).apply(std::slice::from_ref(&step), |_| {});
    fake.assert_all_used();
    assert!(
        matches!(&outcomes[0].verdict, Verdict::NotRun(why) if why.contains(&format!("holds '{ISO_A}' now (the plan saw nothing)"))),
        "{outcomes:?}"
    );

    let fake = std::sync::Arc::new(crate::virsh::fake::FakeRunner::default());
    expect_reread(&fake, &empty_live, "");
    // vol-info prints nothing for a path no pool holds.
    fake.expect(&["vol-info", "--vol", ISO_B], 1, "", "error: no vol\n");
    let outcomes = scripted_media(&fake).apply(&[step], |_| {});
    fake.assert_all_used();
    assert!(
        matches!(&outcomes[0].verdict, Verdict::NotRun(why) if why.contains("the ISO is gone since the plan")),
        "{outcomes:?}"
    );
}

/// virsh past `--timeout` on a change the re-read XML shows made: done,
/// with the note, where it used to be FAILED with the ISO out.
#[test]
fn a_change_virsh_confirms_late_is_done_when_the_xml_shows_it() {
    let fake = std::sync::Arc::new(crate::virsh::fake::FakeRunner::default());
    let step = plan_eject(&running_agent(), "hdc", None, false).unwrap();
    expect_reread(
        &fake,
        &fixture("virsh/dumpxml-lab-agent-live.xml"),
        &fixture("virsh/dumpxml-lab-agent-inactive.xml"),
    );
    let argv = step.argv();
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    fake.expect_hang(&argv);
    expect_reread(
        &fake,
        &fixture("virsh/dumpxml-lab-noagent-ejected-live.xml"),
        &fixture("virsh/dumpxml-lab-noagent-live.xml"),
    );
    let mut sent = Vec::new();
    let outcomes = scripted_media(&fake).apply(&[step], |step| sent.push(step.describe()));
    fake.assert_all_used();
    assert_eq!(sent.len(), 1, "heard of before it went out");
    assert_eq!(outcomes[0].verdict, Verdict::Done, "{outcomes:?}");
    assert!(
        outcomes[0]
            .note
            .as_deref()
            .unwrap()
            .contains("virsh answered late")
    );
}

/// A change whose virsh cannot be started fails with the cause: the
/// outcome used to say `could not run `…`` and drop the "Permission
/// denied" under it.
#[test]
fn a_change_whose_virsh_cannot_start_names_the_cause() {
    let fake = std::sync::Arc::new(crate::virsh::fake::FakeRunner::default());
    let step = plan_eject(&running_agent(), "hdc", None, false).unwrap();
    let live = fixture("virsh/dumpxml-lab-agent-live.xml");
    let config = fixture("virsh/dumpxml-lab-agent-inactive.xml");
    expect_reread(&fake, &live, &config);
    let argv = step.argv();
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    fake.expect_spawn_failure(&argv);
    expect_reread(&fake, &live, &config);
    let outcomes = scripted_media(&fake).apply(&[step], |_| {});
    fake.assert_all_used();
    let Verdict::Failed(why) = &outcomes[0].verdict else {
        panic!("{outcomes:?}");
    };
    assert!(why.contains("could not run `"), "{why}");
    assert!(why.contains(": Permission denied (os error 13)"), "{why}");
}

#[test]
fn attach_picks_a_free_sata_target_in_the_config() {
    let two = domain(
        "two-drives",
        DomainState::Running,
        Some("dumpxml-test-two-drives.xml"),
        Some("dumpxml-test-no-cdrom-inactive.xml"),
    );
    let step = plan_attach(&two, ISO_A).unwrap();
    // Word for word (no word holds a space): `--domain`, a SATA read-only
    // CD-ROM, the persistent config only.
    assert_eq!(
        step.argv().join(" "),
        format!(
            "attach-disk --domain two-drives --source {ISO_A} --target sdb --targetbus sata \
             --type cdrom --mode readonly --config"
        )
    );
    assert!(step.argv().iter().all(|word| !word.contains(' ')));
    let note = step.verify(None, Reply::Refused("x".into())).note;
    assert_eq!(note, None, "no restart note for a failed attach");
    let transient = domain(
        "t",
        DomainState::Running,
        Some("dumpxml-test-no-cdrom-inactive.xml"),
        None,
    );
    assert!(plan_attach(&transient, ISO_A).is_err());
}

/// On a virtio-scsi controller (lab-scsi, captured) libvirt hot-plugs a
/// CD-ROM: the new drive goes on the SCSI bus, live and in the config,
/// with no restart to wait for. On q35 (lab-q35) it is SATA, config only.
/// Every attach used to be SATA into the config.
#[test]
fn attach_goes_on_the_scsi_controller_live_and_in_the_config() {
    let scsi = domain(
        "lab-scsi",
        DomainState::Running,
        Some("dumpxml-lab-scsi-live.xml"),
        Some("dumpxml-lab-scsi-inactive.xml"),
    );
    let step = plan_attach(&scsi, ISO_A).unwrap();
    assert_eq!(
        step.argv().join(" "),
        format!(
            "attach-disk --domain lab-scsi --source {ISO_A} --target sdb --targetbus scsi \
             --type cdrom --mode readonly --config --live"
        )
    );
    assert_eq!(
        step.describe(),
        format!("lab-scsi: add SCSI CD-ROM sdb holding {ISO_A} (live and config)")
    );
    let q35 = domain(
        "lab-q35",
        DomainState::Running,
        Some("dumpxml-lab-q35-live.xml"),
        Some("dumpxml-lab-q35-inactive.xml"),
    );
    let step = plan_attach(&q35, ISO_A).unwrap();
    assert!(step.argv().ends_with(&["--config".to_owned()]));
    assert!(step.argv().contains(&"sata".to_owned()));
    assert_eq!(
        step.describe(),
        format!("lab-q35: add SATA CD-ROM sdb holding {ISO_A} (config)")
    );
}

/// A VM without a CD-ROM but with a SCSI controller (a scratch copy of
/// lab-scsi without its drive, captured): the refusal without
/// `--attach` names the drive `--attach` would add, and a shut-off one
/// gets it in its config only. The refusal used to promise a SATA drive.
#[test]
fn a_scsi_vm_without_a_cdrom_is_offered_a_scsi_one() {
    let vm = domain(
        "scratch-shapes-scsi",
        DomainState::ShutOff,
        None,
        Some("dumpxml-scratch-scsi-no-cdrom-inactive.xml"),
    );
    let refused = vm.drive_for_iso(None, false).unwrap_err().to_string();
    assert!(
        refused.ends_with(
            "`mount --attach` adds a SCSI CD-ROM on its SCSI controller (live and config)"
        ),
        "{refused}"
    );
    let step = plan_attach(&vm, ISO_A).unwrap();
    assert_eq!(
        step.describe(),
        format!("scratch-shapes-scsi: add SCSI CD-ROM sda holding {ISO_A} (config)")
    );
    assert!(!step.argv().contains(&"--live".to_owned()));
}

/// A live change of a running VM's drive may wait libvirt's 5 s for the
/// guest to open its tray, on top of `--timeout`; a forced one or a
/// config-only one does not wait.
#[test]
fn a_live_unforced_change_allows_for_libvirts_tray_wait() {
    let eject = |force| plan_eject(&running_agent(), "hdc", None, force).unwrap();
    assert_eq!(eject(false).libvirt_wait(), Some(super::plan::TRAY_WAIT));
    assert_eq!(eject(true).libvirt_wait(), None);
    let off = domain(
        "lab-off",
        DomainState::ShutOff,
        None,
        Some("dumpxml-lab-off.xml"),
    );
    assert_eq!(
        plan_eject(&off, "hdc", None, false).unwrap().libvirt_wait(),
        None
    );
}

#[test]
fn drives_merge_both_views_and_find_cdroms() {
    let two = domain(
        "two",
        DomainState::Running,
        Some("dumpxml-test-two-drives.xml"),
        None,
    );
    assert_eq!(two.targets(), ["hdc", "sda", "fda"]);
    assert_eq!(two.cdrom_targets(), ["hdc", "sda"]);
}

#[test]
fn locked_tray_points_at_force() {
    // virsh 9.0's words on lab-locked, whose guest mounted its disc.
    let refused = |action: &str| crate::virsh::VirshError::Failed {
        command: "virsh change-media".into(),
        status: std::os::unix::process::ExitStatusExt::from_raw(256),
        stderr: format!(
            "error: Failed to complete action {action} on media\n\
             error: operation failed: timed out waiting to open tray of 'sda'\n"
        ),
    };
    let step = plan_eject(&running_agent(), "hdc", None, false).unwrap();
    assert_eq!(
        plan::explain_failure(&step, &refused("eject")),
        "the tray is locked by the guest (Failed to complete action eject on media: \
         operation failed: timed out waiting to open tray of 'sda'); --force ejects anyway"
    );
    // A mount over the locked disc: `mount --force` replaces it (it used
    // to say that --force ejects).
    let step = plan_mount(&running_agent(), "hdc", ISO_B, false).unwrap();
    let text = plan::explain_failure(&step, &refused("update"));
    assert!(text.ends_with("; --force replaces it anyway"), "{text}");
    let forced = plan_eject(&running_agent(), "hdc", None, true).unwrap();
    assert!(!plan::explain_failure(&forced, &refused("eject")).contains("--force"));
}

#[test]
fn the_drive_for_an_iso_is_named_the_only_cdrom_or_one_to_pick() {
    let two = domain(
        "two",
        DomainState::Running,
        Some("dumpxml-test-two-drives.xml"),
        None,
    );
    assert_eq!(
        two.drive_for_iso(None, false).unwrap(),
        DriveChoice::OneOf(vec!["hdc", "sda"])
    );
    assert_eq!(
        two.drive_for_iso(Some("fda"), false).unwrap(),
        DriveChoice::Decided(IsoDrive::Existing("fda"))
    );
    let unknown = two.drive_for_iso(Some("sdz"), true).unwrap_err();
    assert_eq!(
        unknown.to_string(),
        "'two' has no CD-ROM or floppy drive 'sdz' (drives: hdc, sda, fda)"
    );
    assert_eq!(
        running_agent().drive_for_iso(None, false).unwrap(),
        DriveChoice::Decided(IsoDrive::Existing("hdc"))
    );
    let none = domain(
        "none",
        DomainState::ShutOff,
        None,
        Some("dumpxml-test-no-cdrom-inactive.xml"),
    );
    assert_eq!(
        none.drive_for_iso(None, true).unwrap(),
        DriveChoice::Decided(IsoDrive::Attach)
    );
    let refused = none.drive_for_iso(None, false).unwrap_err().to_string();
    assert!(
        refused.contains("'none' has no CD-ROM drive") && refused.contains("--attach"),
        "{refused}"
    );
}

#[test]
fn ejects_are_planned_for_every_drive_holding_media_or_the_one_named() {
    let domains = [running_agent(), {
        let mut off = running_agent();
        off.name = "other".into();
        off
    }];
    let steps = plan_ejects(&domains, None, None, false).unwrap();
    let names: Vec<&str> = steps.iter().map(Step::domain).collect();
    assert_eq!(names, ["lab-agent", "other"]);
    let only = plan_ejects(&domains, None, Some(&IsoName::exact(ISO_B)), false).unwrap();
    assert!(only.is_empty(), "neither holds {ISO_B}: {only:?}");
    let error = plan_ejects(&domains[..1], Some("sdz"), None, false).unwrap_err();
    assert!(
        error
            .to_string()
            .contains("no CD-ROM or floppy drive 'sdz'")
    );
}

#[test]
fn rows_name_the_other_holders_of_their_media() {
    let mut twin = running_agent();
    twin.name = "twin".into();
    let domains = [running_agent(), twin];
    let rows = rows::drive_rows(&domains, |_| true);
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].shared_with, ["twin"]);
    assert_eq!(rows[1].shared_with, ["lab-agent"]);
    assert_eq!(rows[0].missing, Some(true), "gone(path) said so");
    let holders = holders(&rows);
    assert_eq!(
        holders[ISO_A].iter().copied().collect::<Vec<_>>(),
        ["lab-agent", "twin"]
    );
}

/// Without `-c`, whether ISO paths are this host's comes from the URI the
/// listing already read: asking virsh `uri` again cost a round trip (the
/// scripted virsh refuses any command not declared).
#[test]
fn the_listing_s_uri_decides_where_iso_paths_live() {
    use std::sync::Arc;

    use crate::testing::expect_listing_on;
    use crate::virsh::fake::FakeRunner;
    use crate::virsh::{ListingFor, Runner, VirshConfig};

    let fake = Arc::new(FakeRunner::default());
    expect_listing_on(
        &fake,
        ListingFor::Media,
        "qemu+ssh://root@far/system",
        &[("lab-off", 5)],
        "",
    );
    fake.expect(
        &["dumpxml", "--inactive", "--domain", "lab-off"],
        0,
        &fixture("virsh/dumpxml-lab-off.xml"),
        "",
    );
    fake.expect(&["vol-info", "--vol", ISO_B], 0, "Name: tools-b.iso\n", "");
    let runner: Arc<dyn Runner> = fake.clone();
    let virsh = Virsh::new(
        VirshConfig {
            program: "virsh".into(),
            connect: None,
            timeout: std::time::Duration::from_secs(5),
            sessions: 1,
        },
        runner,
    );
    let media = MediaManager::new(virsh);
    let rows = media.rows(&media.load_all().unwrap()).unwrap();
    assert_eq!(rows[0].missing, Some(false), "looked up as a remote volume");
    fake.assert_all_used();
}

/// A domain whose XML read cannot start virsh fails `load_all` with the
/// cause (the message used to end at `could not run `…``).
#[test]
fn an_xml_read_that_cannot_start_virsh_names_the_cause() {
    use crate::testing::expect_listing_on;
    use crate::virsh::ListingFor;

    let fake = std::sync::Arc::new(crate::virsh::fake::FakeRunner::default());
    expect_listing_on(
        &fake,
        ListingFor::Media,
        "qemu+ssh://far/system",
        &[("lab-off", 5)],
        "",
    );
    fake.expect_spawn_failure(&["dumpxml", "--inactive", "--domain", "lab-off"]);
    let error = scripted_media(&fake).load_all().unwrap_err();
    fake.assert_all_used();
    let message = format!("{error:#}");
    assert!(message.contains("'lab-off': could not run `"), "{message}");
    assert!(
        message.ends_with(": Permission denied (os error 13)"),
        "{message}"
    );
}
