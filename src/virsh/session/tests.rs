//! Sessions under faults the real virsh cannot produce on demand (hangs,
//! deaths, floods, lost connections), with a scripted fake.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::thread;
use std::time::Duration;

use super::*;

/// A session virsh for faults the real one cannot produce on demand:
/// it answers `echo` like virsh's shell; a line with `wedge` sleeps with
/// a child (like ssh under virsh), one with `dumpxml` or ending in
/// `change-media` makes it exit, one with `domstate` fails for want of
/// a connection (once per `domstate` in it, as a batch does), one with
/// `flood` prints a megabyte; anything else prints `ok`.
fn fake_session_virsh(tag: &str) -> (PathBuf, PathBuf) {
    let dir = std::env::temp_dir().join(format!("session-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let script = dir.join("virsh");
    std::fs::write(
        &script,
        format!(
            r#"#!/bin/sh
set -f
echo "$$" >> '{dir}/pids'
while IFS= read -r line; do
printf 'virsh # %s\n' "$line"
case "$line" in
    'echo --err '*) printf 'error: %s\n' "${{line#echo --err }}" >&2 ;;
    'echo '*) printf '%s\n' "${{line#echo }}" ;;
    *wedge*) sleep 300 & echo "$!" >> '{dir}/pids'; wait ;;
    *dumpxml*|*change-media) exit 1 ;;
    *domstate*) for word in $line; do
            [ "$word" = domstate ] && printf 'error: Failed to reconnect to the hypervisor\n' >&2
        done ;;
    *flood*) head -c 1000000 /dev/zero | tr '\\0' x ;;
    *) echo ok ;;
esac
done
"#,
            dir = dir.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    (script, dir)
}

fn call(program: &std::path::Path, command: &str) -> Invocation {
    Invocation {
        program: program.display().to_string(),
        connect: None,
        commands: vec![vec![command.to_owned()]],
    }
}

/// One call of `command` with a deadline no test reaches.
fn ask(
    runner: &SessionRunner,
    program: &std::path::Path,
    command: &str,
) -> Result<Output, VirshError> {
    runner.run(&call(program, command), Duration::from_secs(10))
}

fn pids(dir: &std::path::Path) -> Vec<i32> {
    std::fs::read_to_string(dir.join("pids"))
        .unwrap_or_default()
        .lines()
        .map(|pid| pid.parse().unwrap())
        .collect()
}

fn gone(pid: i32) -> bool {
    // Reparented and reaped by init once killed: poll, bounded.
    (0..200).any(|_| {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let dead = stat.is_empty()
            || stat
                .rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z');
        if !dead {
            thread::sleep(Duration::from_millis(25));
        }
        dead
    })
}

#[test]
fn one_session_serves_many_calls() {
    let (virsh, dir) = fake_session_virsh("many");
    let runner = SessionRunner::new(2, Budget::new(2));
    for _ in 0..5 {
        let output = ask(&runner, &virsh, "status").unwrap();
        assert_eq!(output.stdout, "ok\n");
        assert!(output.status.success());
    }
    // One call at a time needs one session: a one-shot read starts no
    // second virsh (over ssh, no second handshake).
    assert_eq!(pids(&dir).len(), 1, "five calls, one after another");
    // Warmed up for a scan, both start at once, so they connect while
    // its first call runs; no call after that starts another.
    runner.warm_up(&call(&virsh, "unused"));
    for _ in 0..5 {
        ask(&runner, &virsh, "status").unwrap();
    }
    assert_eq!(pids(&dir).len(), 2, "the pool's two sessions");
}

#[test]
fn a_call_past_its_deadline_kills_the_session_which_is_replaced() {
    let (virsh, dir) = fake_session_virsh("hang");
    let runner = SessionRunner::new(1, Budget::new(1));
    let error = runner
        .run(&call(&virsh, "wedge"), Duration::from_millis(300))
        .unwrap_err();
    assert!(matches!(error, VirshError::Timeout { .. }), "{error}");
    let hung = pids(&dir);
    assert_eq!(hung.len(), 2, "the session and its child");
    assert!(
        hung.iter().all(|&pid| gone(pid)),
        "{hung:?} outlived the timeout"
    );
    let output = ask(&runner, &virsh, "status").unwrap();
    assert_eq!(output.stdout, "ok\n");
    assert_eq!(
        pids(&dir).len(),
        3,
        "a new session took the place of the killed one"
    );
}

/// A batch of the tool's own making: `commands`, each followed by the
/// `echo` of its marker.
fn batch_call(program: &std::path::Path, commands: &[&[&str]]) -> Invocation {
    let mut batch = crate::virsh::batch::Batch::new();
    for words in commands {
        batch.push(words);
    }
    Invocation {
        program: program.display().to_string(),
        connect: Some("test:///default".to_owned()),
        commands: batch.pieces().remove(0).commands,
    }
}

/// A timeout used to show the batch's `echo @@…` marker lines, quoted
/// for virsh's tokenizer (`\-\-raw`): it names the commands as an admin
/// would type them, and nothing of the framing.
#[test]
fn a_timeout_names_the_commands_not_the_framing() {
    let (virsh, _dir) = fake_session_virsh("timeout-text");
    let runner = SessionRunner::new(1, Budget::new(1));
    let call = batch_call(&virsh, &[&["domstats", "--raw", "wedge"], &["uri"]]);
    let error = runner.run(&call, Duration::from_millis(300)).unwrap_err();
    assert!(matches!(error, VirshError::Timeout { .. }), "{error}");
    let text = error.to_string();
    assert!(
        text.contains(&format!(
            "`{} -c test:///default 'domstats --raw wedge ; uri'` did not finish",
            virsh.display()
        )),
        "{text}"
    );
    assert!(!text.contains("@@") && !text.contains("echo"), "{text}");
}

/// Each command of a batch over a lost connection prints the same error:
/// the message says it once.
#[test]
fn the_same_error_of_several_commands_is_said_once() {
    let (virsh, _dir) = fake_session_virsh("lost-batch");
    let runner = SessionRunner::new(1, Budget::new(1));
    ask(&runner, &virsh, "status").unwrap();
    let call = batch_call(&virsh, &[&["domstate"], &["domstate"], &["domstate"]]);
    let error = runner.run(&call, Duration::from_secs(10)).unwrap_err();
    assert!(matches!(error, VirshError::Failed { .. }), "{error}");
    let text = error.to_string();
    assert_eq!(
        text.matches("Failed to reconnect to the hypervisor")
            .count(),
        1,
        "{text}"
    );
}

#[test]
fn a_session_that_died_is_restarted_once_transparently() {
    let (virsh, dir) = fake_session_virsh("restart");
    let runner = SessionRunner::new(1, Budget::new(1));
    ask(&runner, &virsh, "status").unwrap();
    // virsh dies while idle (killed, crashed): the next call does not
    // notice, whatever it is.
    let first = pids(&dir)[0];
    // SAFETY: kill(2) on a child this test started.
    unsafe { libc::kill(first, libc::SIGKILL) };
    assert!(gone(first));
    let output = ask(&runner, &virsh, "change-media-free");
    assert_eq!(output.unwrap().stdout, "ok\n");
    assert_eq!(pids(&dir).len(), 2);
}

#[test]
fn a_read_only_call_survives_one_death_but_not_two() {
    let (virsh, dir) = fake_session_virsh("twice");
    let runner = SessionRunner::new(1, Budget::new(1));
    ask(&runner, &virsh, "status").unwrap();
    // virsh dies under `dumpxml`: read-only, so it runs again on a new
    // session, where it dies again: that second failure is the error.
    let error = ask(&runner, &virsh, "dumpxml").unwrap_err();
    assert!(matches!(error, VirshError::SessionEnded { .. }), "{error}");
    assert_eq!(pids(&dir).len(), 2, "restarted once, not more");
}

/// A connection that stays lost (ssh refused) is the call's error, after
/// one try on a new virsh: never empty output passed off as an answer.
#[test]
fn a_lost_connection_is_an_error_not_an_empty_answer() {
    let (virsh, dir) = fake_session_virsh("lost");
    let runner = SessionRunner::new(1, Budget::new(1));
    ask(&runner, &virsh, "status").unwrap();
    let error = ask(&runner, &virsh, "domstate").unwrap_err();
    assert!(matches!(error, VirshError::Failed { .. }), "{error}");
    assert!(error.to_string().contains("Failed to reconnect"), "{error}");
    assert_eq!(pids(&dir).len(), 2, "retried once, on a new virsh");
}

/// Output past the limit ends the call with an error and the session
/// with it, instead of filling memory.
#[test]
fn output_past_the_limit_is_an_error() {
    let (virsh, dir) = fake_session_virsh("flood");
    let runner = SessionRunner::new(1, Budget::new(1)).with_output_limit(64 * 1024);
    let error = ask(&runner, &virsh, "flood").unwrap_err();
    assert!(
        matches!(error, VirshError::OutputTooLarge { .. }),
        "{error}"
    );
    let first = pids(&dir)[0];
    assert!(gone(first), "the flooding session is killed");
}

#[test]
fn a_change_is_never_run_twice() {
    let (virsh, dir) = fake_session_virsh("change");
    let runner = SessionRunner::new(1, Budget::new(1));
    ask(&runner, &virsh, "status").unwrap();
    let error = ask(&runner, &virsh, "change-media").unwrap_err();
    assert!(matches!(error, VirshError::SessionEnded { .. }), "{error}");
    assert_eq!(pids(&dir).len(), 1, "not sent again: it may have been done");
}

#[test]
fn a_virsh_that_cannot_connect_reports_its_own_error() {
    let runner = SessionRunner::new(1, Budget::new(1));
    let error = runner
        .run(
            &Invocation {
                program: "virsh".into(),
                connect: Some("bogus:///nowhere".into()),
                commands: vec![vec!["list".into()]],
            },
            Duration::from_secs(10),
        )
        .unwrap_err();
    assert!(matches!(error, VirshError::Failed { .. }), "{error}");
    assert!(error.to_string().contains("bogus:///nowhere"), "{error}");
}

#[test]
fn words_with_control_characters_bypass_the_shell() {
    let mut words = call(std::path::Path::new("virsh"), "x");
    assert!(fits_a_line(&words));
    words.commands[0].push("a\nb".into());
    assert!(!fits_a_line(&words));
    words.commands[0][1] = "tab\there".into();
    assert!(!fits_a_line(&words));
    words.commands[0][1] = "é ü \u{202e}".into();
    assert!(fits_a_line(&words));
}

/// Two hosts and one place: a host takes the place of another's idle
/// session; while that other host is worked on, it keeps its session and
/// the newcomer waits for it, however long: its own timeout (200 ms)
/// counts its call, never the wait. The wait is seen to begin (the
/// newcomer queued in the budget) and to outlast the timeout (its call
/// still out): a fixed pause used to stand in for both, and a thread
/// that started late passed without waiting past its timeout.
#[test]
fn hosts_share_the_budget_and_the_wait_for_a_place_is_not_the_timeout() {
    let (virsh, dir) = fake_session_virsh("budget");
    let budget = Budget::new(1);
    let first = SessionRunner::new(1, Arc::clone(&budget));
    let second = SessionRunner::new(1, Arc::clone(&budget));
    ask(&first, &virsh, "status").unwrap();
    ask(&second, &virsh, "status").unwrap();
    let started = pids(&dir);
    assert_eq!(started.len(), 2);
    assert!(gone(started[0]), "the idle session made room");

    first.begin_work();
    ask(&first, &virsh, "status").unwrap();
    assert!(
        gone(started[1]),
        "a host nobody works on gives its place up"
    );
    thread::scope(|scope| {
        let waiting =
            scope.spawn(|| second.run(&call(&virsh, "status"), Duration::from_millis(200)));
        while budget.waiting() == 0 {
            thread::sleep(Duration::from_millis(1));
        }
        let queued = std::time::Instant::now();
        while queued.elapsed() <= Duration::from_millis(200) {
            thread::sleep(Duration::from_millis(200).saturating_sub(queued.elapsed()));
        }
        assert!(!waiting.is_finished(), "still waiting past its timeout");
        let kept = pids(&dir)[2];
        assert!(
            std::path::Path::new(&format!("/proc/{kept}")).exists(),
            "the host worked on keeps its session"
        );
        first.end_work(false);
        let answer = waiting.join().unwrap().unwrap();
        assert_eq!(answer.stdout, "ok\n");
    });
    assert_eq!(pids(&dir).len(), 4);

    // Work that ends with `close` gives the places back at once.
    second.begin_work();
    second.end_work(true);
    assert!(gone(pids(&dir)[3]));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// readline reads a session's line a byte at a time: a long line runs as
/// a process of its own where that connects cheaply (a local libvirtd),
/// and stays on the session over ssh, on the test driver and on virsh's
/// default URI.
#[test]
fn long_lines_run_as_a_process_where_one_connects_cheaply() {
    let batch = |connect: Option<&str>, commands: usize| Invocation {
        program: "virsh".into(),
        connect: connect.map(str::to_owned),
        commands: (0..commands)
            .map(|n| vec!["dumpxml".into(), "--domain".into(), format!("vm-{n:04}")])
            .collect(),
    };
    assert!(cheaper_as_a_process(&batch(Some("qemu:///system"), 1000)));
    assert!(!cheaper_as_a_process(&batch(Some("qemu:///system"), 10)));
    for connect in [
        Some("qemu+ssh://root@kvm/system"),
        Some("test:///default"),
        None,
    ] {
        assert!(!cheaper_as_a_process(&batch(connect, 1000)), "{connect:?}");
    }
}
