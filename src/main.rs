//! The binary: everything is in the library's `cli` module, the exit
//! codes in `cli/exit.rs`.

use std::process::ExitCode;

fn main() -> ExitCode {
    // Kills every virsh the run started, on any way out: return, error,
    // panic, or a signal.
    let _reaper = dismount_iso_qemu::virsh::groups::reap_on_exit();
    dismount_iso_qemu::main()
}
