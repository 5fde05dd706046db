# shellcheck shell=bash
# scripts/lab.d/common.sh — what scripts/lab and scripts/lab.d/build-guest
# share: the LAB_DIR layout, messages, apt. Sourced, never run.
# shellcheck disable=SC2034 # the paths are for the scripts that source it

# A command that fails unexpectedly ends the script under -e; say where,
# so that a lab that cannot come up never fails in silence.
trap 'printf "lab: error: %s line %s failed: %s\n" "${BASH_SOURCE[0]##*/}" "$LINENO" "$BASH_COMMAND" >&2' ERR

# English messages (we match on them) that keep non-ASCII names intact:
# LC_ALL=C would turn "é" into \xc3\xa9 escapes in virsh output.
export LC_ALL=C.UTF-8
unset LANGUAGE

LAB_D=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
readonly LAB_D
REPO_DIR=$(dirname "$(dirname "$LAB_D")")
readonly REPO_DIR
LAB_DIR=${LAB_DIR:-$REPO_DIR/.lab}
# QEMU and libvirt need absolute paths; do not require the dir to exist yet
# (`env` must work before the first `up`).
[[ $LAB_DIR == /* ]] || LAB_DIR=$PWD/$LAB_DIR
LAB_DIR=${LAB_DIR%/}
# Exported: scripts/lab's children (build-guest) use the same one.
export LAB_DIR
readonly LAB_DIR
readonly ISO_DIR=$LAB_DIR/isos
readonly GUEST_DIR=$LAB_DIR/guest
readonly KERNEL=$GUEST_DIR/kernel
readonly INITRD=$GUEST_DIR/initrd.img
# The same kernel as a bzImage, for the rescue ISO's grub.
readonly BZIMAGE=$GUEST_DIR/bzImage

say() { printf 'lab: %s\n' "$*" >&2; }
die() { printf 'lab: error: %s\n' "$*" >&2; exit 1; }

# Once per `up`, children included (the variable is exported).
apt_update_once() {
    [[ -z ${LAB_APT_UPDATED:-} ]] || return 0
    export LAB_APT_UPDATED=1
    say "apt-get update"
    # Third-party sources without network make update exit non-zero even
    # when Debian's lists were refreshed; the retried command decides.
    apt-get update -qq >>"$LAB_DIR/apt.log" 2>&1 ||
        say "apt-get update reported errors (continuing; see $LAB_DIR/apt.log)"
}

# Try with the lists as they are (fast path); stale or missing lists make
# apt fail, and then one update and one retry fix it.
apt_retry() {
    "$@" && return 0
    [[ -z ${LAB_APT_UPDATED:-} ]] || return 1
    apt_update_once
    "$@"
}

# The tail of apt's log, then the error: dpkg's chatter stays in the log.
apt_die() {
    tail -n 15 "$LAB_DIR/apt.log" >&2
    die "$*"
}
